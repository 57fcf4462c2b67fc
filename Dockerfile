# The application image: one statically linked binary on an empty base.
#
# There is no registry to pull a builder image from, so the binary is built outside the image
# (scripts/build-image.sh: release profile `image`, glibc linked statically) and this file only
# packages it. Build context: a directory holding `server`, not the repository root.
FROM scratch

ARG VERSION=dev
# dev.ecs-zdt.rehearsal-knobs: what `orchestrate rehearse` may flip inside this image (its
# negative controls need them); an image without the label runs every other scenario.
LABEL org.opencontainers.image.title="server" \
      org.opencontainers.image.description="Web service that drains gracefully on SIGTERM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      dev.ecs-zdt.rehearsal-knobs="DRAIN_DELAY_SECONDS PAGE_STATUS /delay/{ms}"

COPY server /server

# Production defaults; override per task definition. Keep the ECS stopTimeout above
# SHUTDOWN_TIMEOUT_SECONDS and the target group deregistration delay above DRAIN_DELAY_SECONDS.
ENV PORT=8080 \
    APP_VERSION=${VERSION} \
    LOG_FORMAT=json \
    DRAIN_DELAY_SECONDS=5 \
    SHUTDOWN_TIMEOUT_SECONDS=25

# Not root: any unprivileged uid works, the image has no /etc/passwd.
USER 65532:65532
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/server", "healthcheck"]
# Exec form: `server` is PID 1 and receives the SIGTERM itself.
ENTRYPOINT ["/server"]
