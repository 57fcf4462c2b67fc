//! Lifecycle hooks invoked the way Lambda would be: the function the stack maps a name to (a
//! loopback URL or a command) gets the event as JSON.

use std::time::Duration;

use super::types::{EventStatus, HOOK_TIMEOUT_SECS};
use crate::control::Control;
use stack::HookFunction;

pub(super) fn function_of<'a>(stack: &'a stack::Stack, name: &str) -> Option<&'a HookFunction> {
    // A hook may name the function or its ARN (`arn:aws:lambda:...:function:NAME[:alias]`).
    let short = name
        .split_once(":function:")
        .map_or(name, |(_, rest)| rest.split(':').next().unwrap_or(rest));
    stack.codedeploy.as_ref()?.functions.get(short)
}
/// Invokes a hook's function the way Lambda would: the event as JSON. A failed invocation fails
/// the hook at once; a successful one waits for `PutLifecycleEventHookExecutionStatus`.
pub(in crate::control) async fn invoke(
    c: &Control,
    deployment: String,
    execution_id: String,
    f: HookFunction,
) {
    let event = serde_json::json!({
        "DeploymentId": deployment,
        "LifecycleEventHookExecutionId": execution_id,
    })
    .to_string();
    let timeout = c
        .clock()
        .timeout(Duration::from_secs(u64::from(HOOK_TIMEOUT_SECS)));
    let outcome = match (&f.url, &f.command) {
        (Some(url), _) => post(url, event, timeout).await,
        (None, Some(cmd)) => run(cmd, event, timeout).await,
        (None, None) => Err("the function has neither url nor command".to_owned()),
    };
    if let Err(e) = outcome {
        c.write(|st, c| {
            if let Ok(d) = st.codedeploy.deployment_mut(&deployment)
                && let Some(h) = d.hook.as_mut().filter(|h| h.execution_id == execution_id)
                && h.status == EventStatus::Pending
            {
                h.status = EventStatus::Failed;
                h.error = Some(format!("The hook function {} failed: {e}", h.function));
                c.events().emit(
                    "codedeploy",
                    format!("deployment {deployment}: hook {} failed: {e}", h.function),
                );
            }
        });
    }
}

pub(super) async fn post(url: &str, event: String, timeout: Duration) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    stack::loopback_url(url)?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(event)))
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {url} answered {status}"))
    }
}

pub(super) async fn run(cmd: &[String], event: String, timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = cmd.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(event.as_bytes()).await;
    }
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .map_err(|_| format!("{program} did not finish in time"))?
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}
