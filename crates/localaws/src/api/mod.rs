//! The AWS API on one endpoint (like LocalStack's port 4566): wire formats in, control-plane
//! calls out.
//!
//! Services are told apart as AWS's own endpoints would: `X-Amz-Target` names a JSON service
//! (ECS, CodeDeploy); otherwise the form's `Version` (Auto Scaling `2011-01-01`, ELBv2 `2015-12-01`, EC2
//! `2016-11-15`), or failing that the SigV4 credential scope in `Authorization`. Signatures are
//! not verified: any credentials work. Every response carries `x-amzn-requestid`. A client's
//! mistake is a 400 with the service's own error code, never a 500 (SDKs retry 500s), and an
//! operation that is not emulated is a 400 naming it.
//!
//! The stack's `[[api_faults]]` (AccessDenied or Throttling per IAM action, optionally for N
//! calls) are answered here before dispatch, in each protocol's own codes, so no service module
//! knows about them. Each service module has one function per operation.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::{Control, ControlError, uuid};
use stack::{ApiFault, FaultKind};

pub mod autoscaling;
pub mod codedeploy;
pub mod ec2;
pub mod ecs;
pub mod elbv2;
pub mod json;
pub mod query;

/// The largest request body accepted (AWS's query APIs stop well below this).
pub const MAX_BODY: usize = 1024 * 1024;

/// A client-facing error: HTTP status, the service's error code, a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400 for client mistakes).
    pub status: StatusCode,
    /// The service's error code (`ValidationError`, `ClusterNotFoundException`, ...).
    pub code: String,
    /// What went wrong, naming the parameter.
    pub message: String,
}

impl ApiError {
    /// 400 with `code`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A required parameter is missing (query services' `ValidationError`).
    pub fn missing(name: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
        ))
    }

    /// `ValidationError`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationError", message)
    }

    /// Maps a control-plane error: validation and conflicts keep their codes; not-found errors
    /// take the code `not_found` gives for the kind.
    pub fn from_control(
        e: ControlError,
        validation_code: &str,
        not_found: impl Fn(&'static str, &str) -> (String, String),
    ) -> Self {
        match e {
            ControlError::Validation(m) => Self::new(validation_code, m),
            ControlError::Conflict { code, message } => Self::new(code, message),
            ControlError::NotFound { kind, name } => {
                let (code, message) = not_found(kind, &name);
                Self::new(code, message)
            }
        }
    }
}

/// A running API endpoint.
#[derive(Debug)]
pub struct Api {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    /// Binds `addr` (loopback only) and serves the API for `control` until `stop` fires.
    pub async fn start(
        addr: SocketAddr,
        control: Control,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the API binds loopback addresses only, not {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, control, stop));
        Ok(Self { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:4566`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until it stopped.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The stack's injected faults, with how many calls each still answers.
#[derive(Debug)]
struct Faults(std::sync::Mutex<Vec<(ApiFault, Option<u32>)>>);

impl Faults {
    fn new(faults: &[ApiFault]) -> Self {
        Self(std::sync::Mutex::new(
            faults.iter().map(|f| (f.clone(), f.times)).collect(),
        ))
    }

    /// The fault a call of `service:action` (IAM names) answers, if any; counts it.
    fn hit(&self, service: &str, action: &str) -> Option<FaultKind> {
        let mut faults = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        faults.iter_mut().find_map(|(f, left)| {
            let (svc, op) = f.action.split_once(':')?;
            if svc != service || op != action || *left == Some(0) {
                return None;
            }
            if let Some(n) = left {
                *n -= 1;
            }
            Some(f.fault)
        })
    }
}

/// What AWS answers for an injected fault, in the protocol's own codes.
fn fault_error(kind: FaultKind, protocol: Protocol, service: &str, action: &str) -> ApiError {
    let caller = crate::arn::global("sts", "assumed-role/localaws/test");
    let denied = format!(
        "User: {caller} is not authorized to perform: {service}:{action} because no identity-based policy allows the {service}:{action} action"
    );
    match (kind, protocol) {
        (FaultKind::AccessDenied, Protocol::Json) => ApiError::new("AccessDeniedException", denied),
        (FaultKind::AccessDenied, Protocol::Ec2) => ApiError {
            status: StatusCode::FORBIDDEN,
            code: "UnauthorizedOperation".into(),
            message: format!("You are not authorized to perform this operation. {denied}"),
        },
        (FaultKind::AccessDenied, Protocol::Query(_)) => ApiError {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied".into(),
            message: denied,
        },
        (FaultKind::Throttling, Protocol::Json) => {
            ApiError::new("ThrottlingException", "Rate exceeded")
        }
        (FaultKind::Throttling, Protocol::Ec2) => {
            ApiError::new("RequestLimitExceeded", "Request limit exceeded.")
        }
        (FaultKind::Throttling, Protocol::Query(_)) => ApiError::new("Throttling", "Rate exceeded"),
    }
}

async fn serve(listener: TcpListener, control: Control, stop: CancellationToken) {
    let faults = std::sync::Arc::new(Faults::new(&control.stack().api_faults));
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    tracing::warn!(%err, "api accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let control = control.clone();
        let stop = stop.clone();
        let faults = faults.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let control = control.clone();
                let faults = faults.clone();
                async move { Ok::<_, Infallible>(handle(req, &control, &faults).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

/// Which wire protocol a response speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsQuery with its namespace.
    Query(&'static str),
    /// EC2 query.
    Ec2,
    /// awsJson1_1.
    Json,
}

/// Renders an error in `protocol`.
pub fn error_response(protocol: Protocol, e: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    let (body, content_type) = match protocol {
        Protocol::Query(ns) => (
            query::error(
                ns,
                &e.code,
                &e.message,
                e.status.is_client_error(),
                request_id,
            ),
            "text/xml",
        ),
        Protocol::Ec2 => (
            query::ec2_error(&e.code, &e.message, request_id),
            "text/xml",
        ),
        Protocol::Json => (json::error_body(&e.code, &e.message), json::CONTENT_TYPE),
    };
    let mut r = respond(e.status, content_type, body, request_id);
    if protocol == Protocol::Json
        && let Ok(v) = HeaderValue::from_str(&e.code)
    {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// The service named in a SigV4 `Authorization` header's credential scope.
fn scope_service(req: &Request<Incoming>) -> Option<String> {
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let scope = cred.split([',', ' ']).next()?;
    // AKID/date/region/service/aws4_request
    scope.split('/').nth(3).map(str::to_owned)
}

/// The services of the query protocols, told apart by the form's `Version` (or, without one,
/// the SigV4 scope). ECS and CodeDeploy speak JSON and are told apart by `X-Amz-Target`
/// (`json.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryService {
    AutoScaling,
    Elbv2,
    Ec2,
}

impl QueryService {
    /// The service a request names, or why none is named.
    fn of(version: Option<&str>, scope: Option<&str>) -> Result<Self, ApiError> {
        match (version, scope) {
            (Some(autoscaling::VERSION), _) | (None, Some("autoscaling")) => Ok(Self::AutoScaling),
            (Some(elbv2::VERSION), _) | (None, Some("elasticloadbalancing")) => Ok(Self::Elbv2),
            (Some(ec2::VERSION), _) | (None, Some("ec2")) => Ok(Self::Ec2),
            (Some(v), _) => Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "unknown API version {v:?}: localaws serves Auto Scaling {}, ELBv2 {} and EC2 {} over the query protocol",
                    autoscaling::VERSION,
                    elbv2::VERSION,
                    ec2::VERSION
                ),
            )),
            (None, _) => Err(ApiError::new(
                "MissingParameter",
                "no X-Amz-Target header and no Version parameter: cannot tell which service is called",
            )),
        }
    }

    /// The IAM service prefix (`autoscaling:StartInstanceRefresh`), as `[[api_faults]]` name it.
    fn iam(self) -> &'static str {
        match self {
            Self::AutoScaling => "autoscaling",
            Self::Elbv2 => "elasticloadbalancing",
            Self::Ec2 => "ec2",
        }
    }

    /// The protocol its answers and errors speak.
    fn protocol(self) -> Protocol {
        match self {
            Self::AutoScaling => Protocol::Query(autoscaling::XMLNS),
            Self::Elbv2 => Protocol::Query(elbv2::XMLNS),
            Self::Ec2 => Protocol::Ec2,
        }
    }

    /// Calls `action` and renders the answer.
    fn call(
        self,
        control: &Control,
        action: &str,
        params: &query::Params,
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let result = match self {
            Self::AutoScaling => autoscaling::handle(control, action, params),
            Self::Elbv2 => elbv2::handle(control, action, params),
            Self::Ec2 => ec2::handle(control, action, params),
        };
        match (result, self.protocol()) {
            (Ok(x), Protocol::Query(ns)) => {
                ok_xml(query::response(action, ns, &x, request_id), request_id)
            }
            (Ok(x), _) => ok_xml(query::ec2_response(action, &x, request_id), request_id),
            (Err(e), protocol) => error_response(protocol, &e, request_id),
        }
    }
}

/// The request body, at most [`MAX_BODY`] bytes.
async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "RequestEntityTooLarge".into(),
                message: format!("request body larger than {MAX_BODY} bytes"),
            })
        }
        Err(e) => Err(ApiError::new(
            "IncompleteBody",
            format!("cannot read the request body: {e}"),
        )),
    }
}

/// Dispatches a JSON request (awsJson1_1) to its service's operation: ECS or CodeDeploy, by the
/// service prefix of its `X-Amz-Target`.
pub fn dispatch_json(
    c: &Control,
    target: &str,
    content_type: &str,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let (service, operation, input) = json::parse(target, content_type, body)?;
    match service {
        ecs::TARGET_PREFIX => ecs::handle(c, operation, &input),
        codedeploy::TARGET_PREFIX => codedeploy::handle(c, operation, &input),
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("localaws does not emulate the JSON service {other:?} (X-Amz-Target {target})"),
        )),
    }
}

/// An ECS or CodeDeploy call (awsJson1_1, `X-Amz-Target: <service prefix>.<operation>`).
fn json_call(
    control: &Control,
    faults: &Faults,
    target: &str,
    content_type: &str,
    body: &[u8],
    request_id: &str,
) -> Response<Full<Bytes>> {
    let (prefix, op) = target.split_once('.').unwrap_or(("", ""));
    let service = if prefix.starts_with("CodeDeploy") {
        "codedeploy"
    } else {
        "ecs"
    };
    if let Some(kind) = faults.hit(service, op) {
        let e = fault_error(kind, Protocol::Json, service, op);
        return error_response(Protocol::Json, &e, request_id);
    }
    match dispatch_json(control, target, content_type, body) {
        Ok(value) => respond(
            StatusCode::OK,
            json::CONTENT_TYPE,
            value.to_string(),
            request_id,
        ),
        Err(e) => error_response(Protocol::Json, &e, request_id),
    }
}

/// One API request: the protocol and service worked out once, injected faults answered, then
/// the service's operation called.
async fn handle(
    req: Request<Incoming>,
    control: &Control,
    faults: &Faults,
) -> Response<Full<Bytes>> {
    let request_id = uuid();
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let scope = scope_service(&req);
    let query_string = req.uri().query().unwrap_or("").as_bytes().to_vec();
    // Before the body is read, the protocol an error must speak is a guess from the headers.
    let guess = match (&target, scope.as_deref()) {
        (Some(_), _) => Protocol::Json,
        (None, Some("ec2")) => QueryService::Ec2.protocol(),
        (None, Some("elasticloadbalancing")) => QueryService::Elbv2.protocol(),
        _ => QueryService::AutoScaling.protocol(),
    };
    let body = match read_body(req.into_body()).await {
        Ok(body) => body,
        Err(e) => return error_response(guess, &e, &request_id),
    };
    if let Some(target) = target {
        return json_call(control, faults, &target, &content_type, &body, &request_id);
    }
    if !body.is_empty() && !content_type.starts_with("application/x-www-form-urlencoded") {
        let e = ApiError::new(
            "UnsupportedMediaType",
            format!(
                "expected Content-Type application/x-www-form-urlencoded (awsQuery) or an X-Amz-Target header (JSON), got {:?}",
                content_type
            ),
        );
        return error_response(guess, &e, &request_id);
    }
    let params = query::Params::parse(&[&query_string, &body]);
    let service = match QueryService::of(params.get("Version"), scope.as_deref()) {
        Ok(service) => service,
        Err(e) => return error_response(guess, &e, &request_id),
    };
    let Some(action) = params.get("Action").filter(|a| !a.is_empty()) else {
        let e = ApiError::new("MissingAction", "the Action parameter is required");
        return error_response(service.protocol(), &e, &request_id);
    };
    if let Some(kind) = faults.hit(service.iam(), action) {
        let protocol = service.protocol();
        return error_response(
            protocol,
            &fault_error(kind, protocol, service.iam(), action),
            &request_id,
        );
    }
    service.call(control, action, &params, &request_id)
}

fn ok_xml(body: String, request_id: &str) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "text/xml", body, request_id)
}

/// The answer to an operation that is not emulated: 400, naming it (a 500 would be retried).
pub fn unsupported(service: &str, action: &str, code: &str) -> ApiError {
    ApiError::new(
        code,
        format!("localaws does not emulate {service} operation {action}"),
    )
}
