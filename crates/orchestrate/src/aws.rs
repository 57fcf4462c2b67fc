//! AWS clients: one code path for real AWS and for `localaws` (or any compatible endpoint).
//!
//! The default credential chain and region, HTTPS with rustls (platform roots), plain HTTP where
//! the endpoint URL says `http://` (as `localaws` does). `--endpoint-url` or `AWS_ENDPOINT_URL`
//! points every client elsewhere.

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls;

/// The clients the commands use.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Auto Scaling.
    pub asg: aws_sdk_autoscaling::Client,
    /// CodeDeploy.
    pub cd: aws_sdk_codedeploy::Client,
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
}

/// Where to find AWS.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// An endpoint URL for every service (`localaws`: `http://127.0.0.1:4566`).
    pub endpoint_url: Option<String>,
    /// A region; the default chain's otherwise.
    pub region: Option<String>,
    /// Fixed credentials (the rehearsal's); the default chain's otherwise.
    pub static_credentials: bool,
}

impl Clients {
    /// Clients for `target`.
    pub async fn new(target: &Target) -> Clients {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(url) = &target.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &target.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if target.static_credentials {
            loader = loader.credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
                "localaws",
                "localaws",
                None,
                None,
                "orchestrate-rehearse",
            ));
        }
        let conf = loader.load().await;
        Clients {
            asg: aws_sdk_autoscaling::Client::new(&conf),
            cd: aws_sdk_codedeploy::Client::new(&conf),
            ecs: aws_sdk_ecs::Client::new(&conf),
        }
    }
}

/// One line for an SDK error: the service's code and message, or what failed on the way.
pub fn describe_error<E, R>(e: &aws_sdk_autoscaling::error::SdkError<E, R>) -> String
where
    E: aws_sdk_autoscaling::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_autoscaling::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("error");
            let throttled = matches!(
                code,
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
            );
            format!(
                "{code}: {}{}",
                err.message().unwrap_or("(no message)"),
                if throttled {
                    " (still throttled after the SDK's retries with backoff; AWS_MAX_ATTEMPTS raises them)"
                } else {
                    ""
                }
            )
        }
        SdkError::DispatchFailure(d) => {
            if d.is_io() || d.is_timeout() {
                "cannot reach the AWS endpoint (is it up? --endpoint-url / AWS_ENDPOINT_URL)"
                    .to_owned()
            } else {
                format!("request not sent: {d:?}")
            }
        }
        SdkError::ConstructionFailure(_) => {
            "request not built: missing region or credentials? (AWS_REGION, AWS_PROFILE or --region)"
                .to_owned()
        }
        SdkError::TimeoutError(_) => "the AWS call timed out".to_owned(),
        other => format!("{other}"),
    }
}
