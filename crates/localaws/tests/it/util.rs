//! Test utilities: a small stack on real processes, the probe, in-test targets with chosen
//! misbehaviour, and a bridge that marks data-plane events on the probe's timeline.

#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use loadprobe::{ConnectionMode, Probe, ProbeConfig, Rate, Report};
use localaws::{DataPlane, Options, ProcessRuntime, Stack};
use stack::{ServiceConfig, ServiceLoadBalancer};

/// The `server` binary, built if this test run did not build it already.
pub fn server_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/it-xxxx -> target/<profile>/server
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
        let bin = profile_dir.join("server");
        if !bin.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "-p", "server", "--bin", "server"])
                .status()
                .expect("run cargo build -p server");
            assert!(status.success(), "cargo build -p server failed");
        }
        assert!(bin.is_file(), "no server binary at {}", bin.display());
        bin
    })
    .clone()
}

/// The test stack: 3 instances, blue/green target groups (health checks every 5 s simulated =
/// 0.5 s real, deregistration delay 20 s = 2 s real), task definition `web` whose app drains
/// for 1 s, production and test listeners. No services: tests start tasks themselves.
pub fn test_stack() -> Stack {
    let text = r#"
        time_scale = 10.0
        [cluster]
        instances = 3
        [images.server]
        command = "server"
        environment = { LOG_FORMAT = "json" }
        [[task_definitions]]
        family = "web"
        [[task_definitions.containerDefinitions]]
        name = "web"
        image = "server"
        stopTimeout = 10
        portMappings = [{ containerPort = 8080, hostPort = 0 }]
        environment = [
          { name = "APP_VERSION", value = "v1" },
          { name = "DRAIN_DELAY_SECONDS", value = "1" },
          { name = "SHUTDOWN_TIMEOUT_SECONDS", value = "5" },
        ]
        [[target_groups]]
        name = "blue"
        deregistration_delay = 20
        health_check = { path = "/ready", interval = 5, timeout = 3, healthy_threshold = 2, unhealthy_threshold = 2 }
        [[target_groups]]
        name = "green"
        deregistration_delay = 20
        health_check = { path = "/ready", interval = 5, timeout = 3, healthy_threshold = 2, unhealthy_threshold = 2 }
        [[load_balancers]]
        name = "lb"
        [[load_balancers.listeners]]
        name = "production"
        forward = [{ target_group = "blue", weight = 100 }, { target_group = "green", weight = 0 }]
        [[load_balancers.listeners]]
        name = "test"
        forward = [{ target_group = "green", weight = 100 }]
    "#;
    Stack::parse(text, "test stack").expect("test stack")
}

/// [`test_stack`] with two instances and a service `web` of two tasks behind `blue`: what the
/// tests of the `localaws` binary serve.
pub fn service_stack() -> Stack {
    let mut stack = test_stack();
    stack.cluster.instances = 2;
    stack.services.push(ServiceConfig {
        name: "web".into(),
        task_definition: "web".into(),
        desired_count: 2,
        load_balancer: Some(ServiceLoadBalancer {
            target_group: "blue".into(),
            container_name: "web".into(),
            container_port: 8080,
        }),
        minimum_healthy_percent: 100,
        maximum_percent: 200,
        health_check_grace_period: 0,
        deployment_controller: "ECS".into(),
        deployment_circuit_breaker: None,
    });
    stack
}

/// A running data plane and the directory holding its state.
pub struct Stand {
    pub plane: DataPlane,
    pub dir: tempfile::TempDir,
    /// Its share of the machine (see [`slot`]).
    _slot: Slot,
}

impl Stand {
    pub async fn start(stack: Stack) -> Stand {
        Self::start_with(stack, slot().await).await
    }

    /// [`Stand::start`] holding `slot` ([`exclusive`] for a test that measures timings).
    pub async fn start_with(stack: Stack, slot: Slot) -> Stand {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = Options::new(dir.path());
        options.ephemeral_ports = true;
        options.server = Some((server_bin(), Vec::new()));
        let plane = DataPlane::start(stack, Arc::new(ProcessRuntime::new()), options)
            .await
            .expect("data plane");
        Stand {
            plane,
            dir,
            _slot: slot,
        }
    }

    /// `http(s)://ADDR` of `listener` (its protocol's scheme), then `path`.
    pub fn url(&self, listener: &str, path: &str) -> String {
        let l = self.plane.listener(listener).expect("listener");
        format!("{}{path}", l.url().trim_end_matches('/'))
    }

    /// Starts `n` tasks (with `env`), registers them in `tg`, waits until all are healthy.
    pub async fn healthy_tasks(
        &self,
        n: usize,
        tg: &str,
        env: &[(&str, &str)],
    ) -> Vec<localaws::TaskInfo> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let t = self
                .plane
                .run_task("web", None, env)
                .await
                .expect("run task");
            self.plane.register_task(&t.id, tg).expect("register");
            tasks.push(t);
        }
        for t in &tasks {
            self.expect_state(tg, t.endpoint, localaws::TargetHealth::Healthy)
                .await;
        }
        tasks
    }

    /// Waits (up to 10 s) until the target at `addr` in `tg` is in `state`; panics otherwise.
    pub async fn expect_state(&self, tg: &str, addr: SocketAddr, state: localaws::TargetHealth) {
        let reached = self
            .plane
            .wait_for_target(tg, addr, state, Duration::from_secs(10))
            .await
            .expect("target group");
        assert!(reached, "{addr} never became {state} in {tg}");
    }

    pub async fn stop(self) {
        self.plane.shutdown().await;
    }
}

/// Starts a keep-alive probe at `rate` req/s for `secs` seconds, 100 ms intervals.
pub fn probe(url: &str, rate: f64, secs: f64) -> Probe {
    Probe::start(probe_config(url, rate, secs)).expect("probe")
}

/// The configuration [`probe`] starts with.
pub fn probe_config(url: &str, rate: f64, secs: f64) -> ProbeConfig {
    let mut cfg = ProbeConfig::new(url.parse().expect("url"));
    cfg.rate = Rate::PerSecond(rate);
    cfg.duration = Duration::from_secs_f64(secs);
    cfg.connections = 32;
    cfg.mode = ConnectionMode::KeepAlive;
    cfg.interval = Duration::from_millis(100);
    cfg
}

/// Waits until the probe's live state satisfies `cond`; panics after `within`.
pub async fn wait_probe(
    probe: &Probe,
    within: Duration,
    cond: impl Fn(&loadprobe::LiveState) -> bool,
) {
    let mut rx = probe.watch();
    let reached = tokio::time::timeout(within, async {
        loop {
            if cond(&rx.borrow_and_update()) {
                return true;
            }
            if rx.changed().await.is_err() {
                return cond(&rx.borrow());
            }
        }
    })
    .await;
    assert_eq!(
        reached,
        Ok(true),
        "the probe never reached the condition: {:?}",
        probe.live()
    );
}

/// Marks every data-plane event on the probe's timeline, at the time it happened.
pub fn bridge_events(plane: &DataPlane, probe: &Probe) {
    let mut rx = plane.events().subscribe();
    let marker = probe.marker();
    tokio::spawn(async move {
        while let Ok(event) = rx.recv().await {
            marker.mark_at(event.at, event.kind.to_string());
        }
    });
}

/// How much earlier than its cause a failure can stand on the probe's timeline, in ms: the
/// probe places a request at its intended start, but it reaches the wire only when its scheduler
/// and a free connection let it (the report's `send_delay_us`, measured). On a loaded machine
/// that is more than a probe interval; an outage is located against an event with one interval
/// plus this much slack before it.
pub fn send_slack_ms(report: &Report) -> i64 {
    i64::try_from(report.send_delay_us.max / 1000).unwrap_or(i64::MAX)
}

/// The time (ms on the probe's timeline) of the first event whose label contains `needle`.
pub fn event_ms(report: &Report, needle: &str) -> i64 {
    report
        .events
        .iter()
        .find(|e| e.label.contains(needle))
        .unwrap_or_else(|| panic!("no event {needle:?} in {:#?}", report.events))
        .at_ms
}

/// A hyper server inside the test, with a name (its `x-served-by`), a switch that makes its
/// `/ready` answer 500 (failing health checks while still serving traffic), and a count of the
/// non-health-check requests it served. It echoes the request's `x-forwarded-proto` as
/// `x-echo-forwarded-proto`.
pub struct TestTarget {
    pub addr: SocketAddr,
    pub name: &'static str,
    served: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

impl TestTarget {
    pub async fn start(ip: [u8; 4], name: &'static str, failing: bool) -> TestTarget {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("bind test target");
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(failing));
        let (count, fail) = (Arc::clone(&served), Arc::clone(&failing));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (count, fail) = (Arc::clone(&count), Arc::clone(&fail));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let proto = req.headers().get("x-forwarded-proto").cloned();
                        let status = if req.uri().path() == "/ready" {
                            if fail.load(Ordering::Relaxed) {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            }
                        } else {
                            count.fetch_add(1, Ordering::Relaxed);
                            StatusCode::OK
                        };
                        let mut res = Response::new(Full::new(Bytes::from_static(b"hi\n")));
                        *res.status_mut() = status;
                        res.headers_mut()
                            .insert("x-served-by", name.parse().unwrap());
                        res.headers_mut()
                            .insert("x-app-version", "test".parse().unwrap());
                        if let Some(proto) = proto {
                            res.headers_mut().insert("x-echo-forwarded-proto", proto);
                        }
                        std::future::ready(Ok::<_, Infallible>(res))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestTarget {
            addr,
            name,
            served,
            failing,
        }
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }
}

/// GET over a fresh connection: (status, `server` header, `x-localaws-error` header).
pub async fn get(url: &str) -> Result<(u16, String, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("no authority")?.to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(uri.path())
        .header("host", authority)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    Ok((
        res.status().as_u16(),
        header("server"),
        header("x-localaws-error"),
    ))
}

/// The official SDK clients, pointed at a `localaws` endpoint (plain HTTP, any credentials).
pub struct Aws {
    pub cd: aws_sdk_codedeploy::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Aws {
    pub fn new(endpoint: &str) -> Aws {
        let http = aws_smithy_http_client::Builder::new().build_http();
        let region = aws_sdk_autoscaling::config::Region::new("us-east-1");
        let creds =
            aws_sdk_autoscaling::config::Credentials::new("test", "test", None, None, "localaws");
        let asg = aws_sdk_autoscaling::Config::builder()
            .behavior_version(aws_sdk_autoscaling::config::BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(creds.clone())
            .endpoint_url(endpoint)
            .http_client(http.clone())
            .build();
        let ecs = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(creds.clone())
            .endpoint_url(endpoint)
            .http_client(http.clone())
            .build();
        let cd = aws_sdk_codedeploy::Config::builder()
            .behavior_version(aws_sdk_codedeploy::config::BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(creds.clone())
            .endpoint_url(endpoint)
            .http_client(http.clone())
            .build();
        let elb = aws_sdk_elasticloadbalancingv2::Config::builder()
            .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
            .region(region)
            .credentials_provider(creds)
            .endpoint_url(endpoint)
            .http_client(http)
            .build();
        Aws {
            cd: aws_sdk_codedeploy::Client::from_conf(cd),
            asg: aws_sdk_autoscaling::Client::from_conf(asg),
            ecs: aws_sdk_ecs::Client::from_conf(ecs),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb),
        }
    }
}

/// The embedded default stack (the dev environment's names) tuned for tests: simulated time 60x,
/// an application that drains for 1 s, and managed draining as given.
pub fn fleet_stack(managed_draining: bool) -> Stack {
    Stack::rehearsal(managed_draining, 60.0).expect("rehearsal stack")
}

/// The fleet stack with the service under ECS's rolling deployment controller (no CodeDeploy), so
/// `UpdateService` may change its task definition.
pub fn rolling_stack() -> Stack {
    let mut stack = fleet_stack(true);
    stack.codedeploy = None;
    for s in &mut stack.services {
        s.deployment_controller = "ECS".into();
    }
    stack
}

/// A whole localaws (API on a free port, listeners on free ports) and its state directory.
pub struct Fleet {
    pub la: localaws::Localaws,
    pub aws: Aws,
    pub dir: tempfile::TempDir,
    /// Its share of the machine (see [`slot`]).
    _slot: Slot,
}

/// How many fleets may run at once in this test binary. A fleet spends most of its time waiting
/// on the scaled clock (the machine is ~90 % idle while one runs), so a few side by side finish
/// sooner; more than that and the probes at 1,000 req/s starve each other on 2 cores. Each
/// instance of a fleet gets an address of its own data plane's block, so fleets side by side
/// never share an address or a port. `FLEET_SLOTS=1` runs them one at a time.
pub fn fleet_slots() -> u32 {
    static SLOTS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::env::var("FLEET_SLOTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=16).contains(n))
            .unwrap_or(3)
    })
}

/// A share of the machine for one fleet (or a test's own processes), held until dropped.
pub type Slot = tokio::sync::SemaphorePermit<'static>;

fn fleets() -> &'static tokio::sync::Semaphore {
    static FLEETS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    FLEETS.get_or_init(|| tokio::sync::Semaphore::new(fleet_slots() as usize))
}

/// One fleet's share: waits while [`fleet_slots`] fleets run.
pub async fn slot() -> Slot {
    fleets()
        .acquire()
        .await
        .expect("the fleet semaphore is never closed")
}

/// The whole machine, for a test whose measured timings (latency percentiles, a deadline a few
/// scheduling hiccups wide) hold on 2 cores only when no fleet runs beside it.
pub async fn exclusive() -> Slot {
    fleets()
        .acquire_many(fleet_slots())
        .await
        .expect("the fleet semaphore is never closed")
}

impl Fleet {
    /// Starts `stack` and waits until the fleet is healthy.
    pub async fn start(stack: Stack) -> Fleet {
        Self::start_watching(stack).await.0
    }

    /// [`Fleet::start`], also returning the data plane's events (as text) until it was ready.
    pub async fn start_watching(stack: Stack) -> (Fleet, Vec<String>) {
        let slot = slot().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = Options::new(dir.path());
        options.ephemeral_ports = true;
        options.server = Some((server_bin(), Vec::new()));
        let la = localaws::Localaws::start(stack, options, 0)
            .await
            .expect("localaws");
        let mut events = la.plane().events().subscribe();
        let ready = la.wait_ready(la.ready_timeout()).await;
        assert!(
            ready,
            "the fleet did not turn healthy within {:?}",
            la.ready_timeout()
        );
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e.kind.to_string());
        }
        let aws = Aws::new(&la.endpoint());
        (
            Fleet {
                la,
                aws,
                dir,
                _slot: slot,
            },
            seen,
        )
    }

    pub fn url(&self, listener: &str) -> String {
        self.la.listener_url(listener).expect("listener")
    }

    /// How long a refresh of the whole group may take, from the stack's own timings: per
    /// instance, boot and agent start, warmup, task replacement (health checks), deregistration
    /// delay and the application's stop, on the scaled clock, with slack for a loaded machine.
    pub fn refresh_deadline(&self) -> Duration {
        let stack = self.la.plane().stack();
        let clock = self.la.plane().clock();
        let asg = stack.auto_scaling_group.as_ref().expect("asg");
        let ami = stack
            .amis
            .values()
            .map(|a| a.boot + a.agent_start)
            .max()
            .unwrap_or(40);
        let warm = asg
            .default_instance_warmup
            .unwrap_or(asg.health_check_grace_period);
        let tg = &stack.target_groups[0];
        let health = tg.health_check.interval * (tg.health_check.healthy_threshold + 1);
        let simulated =
            ami + warm + health + tg.deregistration_delay + stack.cluster.agent_disconnect_timeout;
        let stop = Duration::from_secs(u64::from(
            stack.task_definitions[0].container_definitions[0]
                .stop_timeout
                .unwrap_or(30),
        ));
        (clock.secs(simulated) + stop) * (asg.max_size + 1) * 2
    }

    /// Adds launch template version 2 of `demo-lt` with `image_id`.
    pub fn new_version(&self, image_id: &str) -> u32 {
        let (_, v) = self
            .la
            .control()
            .create_launch_template_version(
                &localaws::control::ec2::TemplateRef::Name("demo-lt".into()),
                localaws::control::ec2::NewVersion {
                    source_version: Some("1".into()),
                    image_id: Some(image_id.into()),
                    ..Default::default()
                },
            )
            .expect("new launch template version");
        v.number
    }

    /// Starts an instance refresh of `demo-asg` to `version` through the SDK.
    pub async fn start_refresh(
        &self,
        version: u32,
        prefs: aws_sdk_autoscaling::types::RefreshPreferences,
    ) -> String {
        use aws_sdk_autoscaling::types::{DesiredConfiguration, LaunchTemplateSpecification};
        self.aws
            .asg
            .start_instance_refresh()
            .auto_scaling_group_name("demo-asg")
            .desired_configuration(
                DesiredConfiguration::builder()
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_name("demo-lt")
                            .version(version.to_string())
                            .build(),
                    )
                    .build(),
            )
            .preferences(prefs)
            .send()
            .await
            .expect("start instance refresh")
            .instance_refresh_id
            .expect("refresh id")
    }

    /// The refresh `id` as the SDK describes it.
    pub async fn refresh(&self, id: &str) -> aws_sdk_autoscaling::types::InstanceRefresh {
        self.aws
            .asg
            .describe_instance_refreshes()
            .auto_scaling_group_name("demo-asg")
            .instance_refresh_ids(id)
            .send()
            .await
            .expect("describe instance refreshes")
            .instance_refreshes
            .unwrap_or_default()
            .into_iter()
            .next()
            .expect("the refresh")
    }

    /// Polls the refresh through the SDK until `done` holds for its status; panics at the
    /// deadline.
    pub async fn wait_refresh(
        &self,
        id: &str,
        done: impl Fn(&aws_sdk_autoscaling::types::InstanceRefreshStatus) -> bool,
    ) -> aws_sdk_autoscaling::types::InstanceRefresh {
        self.wait_refresh_within(id, done, self.refresh_deadline())
            .await
    }

    /// [`Fleet::wait_refresh`] with its own deadline.
    pub async fn wait_refresh_within(
        &self,
        id: &str,
        done: impl Fn(&aws_sdk_autoscaling::types::InstanceRefreshStatus) -> bool,
        within: Duration,
    ) -> aws_sdk_autoscaling::types::InstanceRefresh {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = self.refresh(id).await;
            if r.status.as_ref().is_some_and(&done) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance refresh {id} still {:?} ({:?}) after {within:?}",
                r.status,
                r.status_reason,
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Launch template versions of the instances in service.
    pub fn versions_in_service(&self) -> Vec<u32> {
        self.la.control().read(|st| {
            st.instances
                .values()
                .filter(|i| i.lifecycle == localaws::control::Lifecycle::InService)
                .filter_map(|i| i.launch_template.as_ref().map(|(_, v)| *v))
                .collect()
        })
    }

    pub async fn stop(self) {
        self.la.shutdown().await;
    }
}

/// Container `web` of image `server` on port 8080 (a dynamic host port), as the stacks' own.
pub fn web_container() -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder {
    aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("web")
        .image("server")
        .port_mappings(
            aws_sdk_ecs::types::PortMapping::builder()
                .container_port(8080)
                .host_port(0)
                .build(),
        )
}

/// Registers revision `version` of `demo-web` through the SDK (`PAGE_STATUS=500` when
/// `broken`) and returns its ARN.
pub async fn register(aws: &Aws, version: &str, broken: bool) -> String {
    register_with(
        aws,
        version,
        if broken {
            &[("PAGE_STATUS", "500")]
        } else {
            &[]
        },
    )
    .await
}

/// [`register`] with `extra` added to the container's environment.
pub async fn register_with(aws: &Aws, version: &str, extra: &[(&str, &str)]) -> String {
    let mut env = vec![
        ("APP_VERSION", version),
        ("DRAIN_DELAY_SECONDS", "1"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
        ("LOG_FORMAT", "json"),
    ];
    env.extend_from_slice(extra);
    let mut container = web_container().essential(true).stop_timeout(10);
    for (k, v) in env {
        container = container.environment(
            aws_sdk_ecs::types::KeyValuePair::builder()
                .name(k)
                .value(v)
                .build(),
        );
    }
    aws.ecs
        .register_task_definition()
        .family("demo-web")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
        .container_definitions(container.build())
        .send()
        .await
        .expect("register task definition")
        .task_definition
        .and_then(|t| t.task_definition_arn)
        .expect("task definition arn")
}

/// Every request sent has exactly one result, and as many were sent as the schedule asked at
/// `rate`, within a fifth of a second's worth (the probe is stopped between two sends).
pub fn assert_complete(report: &Report, rate: f64) {
    assert_eq!(report.missing_results, 0, "{:?}", report.reasons);
    assert_eq!(report.requests, report.ok + report.errors.total);
    #[allow(clippy::cast_precision_loss)]
    let scheduled = rate * report.elapsed_ms as f64 / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let sent = report.requests as f64;
    assert!(
        (sent - scheduled).abs() <= rate / 5.0 + 1.0,
        "{} requests for {scheduled:.0} scheduled in {} ms",
        report.requests,
        report.elapsed_ms
    );
}
