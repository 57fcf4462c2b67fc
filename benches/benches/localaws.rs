//! localaws's per-request work, no sockets on the measured path: the proxy's weighted pick and
//! routing-snapshot load, the health-check matcher, the awsQuery form parser and XML writer,
//! and the awsJson1_1 dispatch.

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use localaws::api::{autoscaling, ecs, json, query};
use localaws::dataplane::health::HealthTracker;
use localaws::dataplane::proxy::Forward;
use localaws::{Control, DataPlane, Options, ProcessRuntime, Stack};
use stack::Matcher;

/// The default stack without its service: a control plane with the Auto Scaling group and its
/// instances, target groups and listeners, and no task process.
fn control(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Control {
    rt.block_on(async {
        let mut stack = Stack::embedded().expect("the embedded stack");
        stack.services.clear();
        let mut options = Options::new(dir);
        options.ephemeral_ports = true;
        options.proxy_threads = Some(1);
        let plane = DataPlane::start(stack, Arc::new(ProcessRuntime::new()), options)
            .await
            .expect("the data plane starts");
        Control::start(plane)
    })
}

fn proxy(c: &mut Criterion, control: &Control) {
    let plane = control.plane();
    let blue = plane.target_group("demo-tg-blue").expect("blue");
    let green = plane.target_group("demo-tg-green").expect("green");
    for (i, tg) in [&blue, &green].into_iter().enumerate() {
        for t in 0..3u16 {
            // Nothing listens there: the group fails open and routes to all three.
            let addr = SocketAddr::from(([127, 0, 0, 1], 9 + t + 3 * i as u16));
            tg.register(format!("task-{i}-{t}"), addr)
                .expect("register");
        }
    }
    let forward = Forward::new(vec![(blue.clone(), 90), (green, 10)]).expect("a valid forward");
    let mut g = c.benchmark_group("localaws/proxy");
    // localaws/proxy/weighted_pick: a 90/10 forward's group for the n-th request, then that
    // group's next target from its routing snapshot (what the listener does per request).
    let mut n = 0usize;
    g.bench_function("weighted_pick", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(forward.pick(black_box(n)).pick())
        });
    });
    // localaws/proxy/routing_snapshot_load: load a group's routing snapshot and read it.
    g.bench_function("routing_snapshot_load", |b| {
        b.iter(|| black_box(blue.routing().targets().len()));
    });
    g.finish();
}

fn health(c: &mut Criterion) {
    let mut g = c.benchmark_group("localaws/health");
    let matcher = Matcher::parse("200-299,302").expect("a valid matcher");
    // localaws/health/matcher: one status checked against `200-299,302`.
    g.bench_function("matcher", |b| {
        b.iter(|| black_box(matcher.matches(black_box(302))));
    });
    // localaws/health/check_outcome: the matcher's verdict fed to the thresholds tracker.
    let mut tracker = HealthTracker::new(2, 2);
    g.bench_function("check_outcome", |b| {
        b.iter(|| black_box(tracker.record(matcher.matches(black_box(200)))));
    });
    g.finish();
}

/// What the SDK sends for StartInstanceRefresh with preferences and a desired configuration.
const REFRESH_FORM: &[u8] = b"Action=StartInstanceRefresh&Version=2011-01-01&AutoScalingGroupName=demo-asg&Strategy=Rolling&DesiredConfiguration.LaunchTemplate.LaunchTemplateName=demo-lt&DesiredConfiguration.LaunchTemplate.Version=2&Preferences.MinHealthyPercentage=90&Preferences.MaxHealthyPercentage=200&Preferences.InstanceWarmup=60&Preferences.SkipMatching=true&Preferences.AutoRollback=true&Preferences.ScaleInProtectedInstances=Refresh&Preferences.StandbyInstances=Terminate&Preferences.CheckpointPercentages.member.1=50&Preferences.CheckpointPercentages.member.2=100&Preferences.CheckpointDelay=30";

fn awsquery(c: &mut Criterion, control: &Control) {
    let mut g = c.benchmark_group("localaws/query");
    // localaws/query/parse_form: a StartInstanceRefresh form (16 parameters) into Params.
    g.bench_function("parse_form", |b| {
        b.iter(|| black_box(query::Params::parse(&[b"", black_box(REFRESH_FORM)])));
    });
    // localaws/query/xml_response: three target health descriptions written as a whole
    // DescribeTargetHealth document.
    g.bench_function("xml_response", |b| {
        b.iter(|| {
            let mut x = query::Xml::new();
            x.list("TargetHealthDescriptions", "member", 0..3u16, |x, i| {
                x.el("Target", |x| {
                    x.leaf("Id", "i-0123456789abcdef0").leaf("Port", 32768 + i);
                })
                .leaf("HealthCheckPort", 32768 + i)
                .el("TargetHealth", |x| {
                    x.leaf("State", "healthy");
                });
            });
            black_box(query::response(
                "DescribeTargetHealth",
                "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
                &x,
                "8c6f1e6e-0000-4000-8000-000000000000",
            ))
        });
    });
    // localaws/query/describe_auto_scaling_groups: form parsed, operation answered from the
    // control plane (3 instances), XML document written.
    let form: &[u8] = b"Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=demo-asg";
    g.bench_function("describe_auto_scaling_groups", |b| {
        b.iter(|| {
            let p = query::Params::parse(&[b"", black_box(form)]);
            let x = autoscaling::handle(control, "DescribeAutoScalingGroups", &p)
                .expect("the group exists");
            black_box(query::response(
                "DescribeAutoScalingGroups",
                autoscaling::XMLNS,
                &x,
                "8c6f1e6e-0000-4000-8000-000000000000",
            ))
        });
    });
    g.finish();
}

fn awsjson(c: &mut Criterion, control: &Control) {
    let mut g = c.benchmark_group("localaws/json");
    let target = format!("{}.DescribeTaskDefinition", ecs::TARGET_PREFIX);
    let body = br#"{"taskDefinition":"demo-web"}"#;
    // localaws/json/dispatch: X-Amz-Target split, JSON body parsed, ECS DescribeTaskDefinition
    // answered, the response rendered as JSON text.
    g.bench_function("dispatch", |b| {
        b.iter(|| {
            let value = localaws::api::dispatch_json(control, &target, json::CONTENT_TYPE, body)
                .expect("the task definition exists");
            black_box(value.to_string())
        });
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a state directory");
    let control = control(&rt, dir.path());
    let _in_runtime = rt.enter();
    proxy(c, &control);
    health(c);
    awsquery(c, &control);
    awsjson(c, &control);
    rt.block_on(control.shutdown());
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench
}
criterion_main!(benches);
