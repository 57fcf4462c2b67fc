//! Target groups: registered targets, their health, draining, and the routing snapshot the proxy
//! reads on every request.
//!
//! States follow ELBv2: `initial` → `healthy` / `unhealthy` by health checks; deregistration puts a
//! target in `draining` (no new requests; in-flight ones may finish) for the deregistration delay,
//! after which its remaining requests are cut off and it becomes `unused` and disappears.
//!
//! Routing, like ALB: only healthy targets get requests; if none is healthy, the group **fails
//! open** and routes to every registered target that is not draining; with none registered the
//! load balancer answers 503.
//!
//! While a target deregisters, the load balancer's nodes go on routing new requests to it for the
//! propagation lag, as ALB's do. Each change rebuilds an immutable `Routing` snapshot that the
//! proxy reads without a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::health::{self, CheckFailure, HealthTracker};
use crate::clock::{Clock, MIN_REAL_DRAIN, MIN_REAL_START};
use crate::events::{EventKind, Events, TargetHealth};
use stack::{Matcher, TargetGroupConfig};

/// A target group's settings, with durations resolved.
#[derive(Debug, Clone)]
pub struct TargetGroupSettings {
    /// Simulated deregistration delay.
    pub deregistration_delay: Duration,
    /// Health-check path.
    pub path: String,
    /// Simulated interval.
    pub interval: Duration,
    /// Simulated timeout.
    pub timeout: Duration,
    /// Passes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Success codes.
    pub matcher: Matcher,
    /// Simulated time the load balancer goes on routing new requests to a deregistering target.
    pub propagation: Duration,
}

impl TargetGroupSettings {
    /// From the stack's (validated) configuration.
    pub fn from_config(c: &TargetGroupConfig) -> Result<Self, String> {
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        stack::health_check_path(&c.health_check.path)
            .map_err(|e| format!("target group {}: health check path: {e}", c.name))?;
        Ok(Self {
            deregistration_delay: secs(c.deregistration_delay),
            path: c.health_check.path.clone(),
            interval: secs(c.health_check.interval),
            timeout: secs(c.health_check.timeout),
            healthy_threshold: c.health_check.healthy_threshold,
            unhealthy_threshold: c.health_check.unhealthy_threshold,
            matcher: Matcher::parse(&c.health_check.matcher)?,
            propagation: Duration::ZERO,
        })
    }
}

/// One registered target of one target group.
#[derive(Debug)]
pub struct Target {
    /// ELBv2 target id (an instance id or a task id here).
    pub id: String,
    /// Where requests go.
    pub addr: SocketAddr,
    pub(crate) authority: Authority,
    /// `addr` as a header value, rendered once (load-balancer errors name the target).
    pub(crate) addr_value: http::HeaderValue,
    /// `id` as a header value, when it is one.
    pub(crate) id_value: Option<http::HeaderValue>,
    /// One keep-alive pool per proxy worker thread, so a request never crosses threads.
    clients: Box<[Client<HttpConnector, Incoming>]>,
    status: Mutex<Status>,
    in_flight: AtomicUsize,
    /// Fired when the deregistration delay ends: in-flight requests are cut off.
    pub(crate) cut_off: CancellationToken,
    /// Fired when health checks must stop (draining or removed).
    stop_checks: CancellationToken,
    /// Its deregistration has begun (read by the proxy on every request, without a lock).
    pub(crate) deregistering: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Status {
    health: TargetHealth,
    reason: Option<&'static str>,
}

/// A target as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// ELBv2 target id.
    pub id: String,
    /// Address.
    pub addr: SocketAddr,
    /// State.
    pub health: TargetHealth,
    /// ELBv2 reason code.
    pub reason: Option<&'static str>,
    /// Requests being proxied to it now.
    pub in_flight: usize,
}

impl Target {
    fn new(
        id: String,
        addr: SocketAddr,
        idle_timeout: Duration,
        workers: usize,
    ) -> Result<Self, String> {
        let authority: Authority = addr
            .to_string()
            .parse()
            .map_err(|e| format!("bad target address {addr}: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // ALB's connection timeout to targets is 10 s.
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let clients = (0..workers.max(1))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    // Backend keep-alive up to the load balancer's idle timeout, as ALB does: a
                    // target that closes idle connections sooner races the proxy
                    // (docs/failure-modes.md#fm-6).
                    .pool_idle_timeout(idle_timeout)
                    .pool_max_idle_per_host(256)
                    .build(connector.clone())
            })
            .collect();
        let addr_value = http::HeaderValue::from_str(&addr.to_string())
            .map_err(|e| format!("bad target address {addr}: {e}"))?;
        let id_value = http::HeaderValue::from_str(&id).ok();
        Ok(Self {
            id_value,
            addr_value,
            id,
            addr,
            authority,
            clients,
            status: Mutex::new(Status {
                health: TargetHealth::Initial,
                reason: Some("Elb.RegistrationInProgress"),
            }),
            in_flight: AtomicUsize::new(0),
            cut_off: CancellationToken::new(),
            stop_checks: CancellationToken::new(),
            deregistering: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The connection pool of the proxy worker running on this thread.
    pub(crate) fn client(&self) -> &Client<HttpConnector, Incoming> {
        &self.clients[super::proxy::worker_index() % self.clients.len()]
    }

    /// The current health state.
    pub fn health(&self) -> TargetHealth {
        self.status().health
    }

    fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(&self, health: TargetHealth, reason: Option<&'static str>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Status { health, reason };
    }

    /// Counts a proxied request until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Requests being proxied to this target.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn info(&self) -> TargetInfo {
        let s = self.status();
        TargetInfo {
            id: self.id.clone(),
            addr: self.addr,
            health: s.health,
            reason: s.reason,
            in_flight: self.in_flight(),
        }
    }
}

/// One proxied request in flight to a target.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Target>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the proxy reads per request: the targets it may pick from.
#[derive(Debug, Default)]
pub struct Routing {
    targets: Vec<Arc<Target>>,
    fail_open: bool,
}

impl Routing {
    /// Whether no target is healthy and the group routes to all registered ones.
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// Targets requests go to.
    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }
}

/// An ALB target group.
#[derive(Debug)]
pub struct TargetGroup {
    /// Name.
    pub name: String,
    settings: TargetGroupSettings,
    targets: Mutex<Vec<Arc<Target>>>,
    routing: ArcSwap<Routing>,
    /// Deregistering targets the load balancer's nodes still route to (propagation lag).
    lingering: Mutex<Vec<Arc<Target>>>,
    next: AtomicUsize,
    idle_timeout: Duration,
    workers: usize,
    clock: Clock,
    events: Events,
    me: Weak<TargetGroup>,
    target_5xx: AtomicU64,
    elb_5xx: AtomicU64,
}

/// A target group's CloudWatch-style counters since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Responses with a 5xx status from its targets (`HTTPCode_Target_5XX_Count`).
    pub target_5xx: u64,
    /// 5xx responses the load balancer made itself for it (`HTTPCode_ELB_5XX_Count`).
    pub elb_5xx: u64,
}

impl TargetGroup {
    /// A target group with no targets. `idle_timeout` (real) bounds idle backend connections;
    /// `workers` is the number of proxy worker threads (one connection pool each per target).
    pub fn new(
        name: impl Into<String>,
        settings: TargetGroupSettings,
        idle_timeout: Duration,
        workers: usize,
        clock: Clock,
        events: Events,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            name: name.into(),
            settings,
            targets: Mutex::new(Vec::new()),
            routing: ArcSwap::from_pointee(Routing::default()),
            lingering: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            idle_timeout,
            workers,
            clock,
            events,
            me: me.clone(),
            target_5xx: AtomicU64::new(0),
            elb_5xx: AtomicU64::new(0),
        })
    }

    /// Its counters.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            target_5xx: self.target_5xx.load(Ordering::Relaxed),
            elb_5xx: self.elb_5xx.load(Ordering::Relaxed),
        }
    }

    /// Counts a response for `HTTPCode_*_5XX_Count`: `from_target` when a target sent it.
    pub fn count_response(&self, status: http::StatusCode, from_target: bool) {
        if status.is_server_error() {
            let c = if from_target {
                &self.target_5xx
            } else {
                &self.elb_5xx
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The group's settings.
    pub fn settings(&self) -> &TargetGroupSettings {
        &self.settings
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Target>>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lingering(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Target>>> {
        self.lingering.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every registered target (draining ones included).
    pub fn describe(&self) -> Vec<TargetInfo> {
        self.targets().iter().map(|t| t.info()).collect()
    }

    /// The state of the target at `addr` (the live registration, else a draining one).
    pub fn health_of(&self, addr: SocketAddr) -> Option<TargetHealth> {
        let targets = self.targets();
        let states = targets
            .iter()
            .filter(|t| t.addr == addr)
            .map(|t| t.health());
        states
            .clone()
            .find(|h| *h != TargetHealth::Draining)
            .or_else(|| states.clone().next())
    }

    /// The routing snapshot (for the proxy and for tests).
    pub fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.routing.load()
    }

    /// Picks the next target round-robin, or `None` when no target is registered (503).
    /// Public for the micro-benchmarks.
    #[doc(hidden)]
    pub fn pick(&self) -> Option<Arc<Target>> {
        let routing = self.routing.load();
        let n = routing.targets.len();
        if n == 0 {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        Some(Arc::clone(&routing.targets[i]))
    }

    /// Registers `addr` under `id` and starts health checks. Registering an address that is
    /// already registered (and not draining) changes nothing.
    pub fn register(&self, id: impl Into<String>, addr: SocketAddr) -> Result<(), String> {
        let target = {
            let mut targets = self.targets();
            if targets
                .iter()
                .any(|t| t.addr == addr && t.health() != TargetHealth::Draining)
            {
                return Ok(());
            }
            let target = Arc::new(Target::new(
                id.into(),
                addr,
                self.idle_timeout,
                self.workers,
            )?);
            targets.push(Arc::clone(&target));
            target
        };
        self.events.emit(EventKind::TargetRegistered {
            target_group: self.name.clone(),
            target: addr,
        });
        self.rebuild();
        tokio::spawn(health_checks(self.me.clone(), target, self.clock));
        Ok(())
    }

    /// Starts deregistering the target at `addr`: it drains for the deregistration delay, then
    /// its remaining requests are cut off and it is removed. Returns a token that fires when it
    /// is gone, or `None` if no such target is registered.
    pub fn deregister(&self, addr: SocketAddr) -> Option<CancellationToken> {
        let target = {
            let targets = self.targets();
            let target = targets
                .iter()
                .find(|t| t.addr == addr && t.health() != TargetHealth::Draining)?;
            Arc::clone(target)
        };
        target.set_status(
            TargetHealth::Draining,
            Some("Target.DeregistrationInProgress"),
        );
        target.deregistering.store(true, Ordering::Relaxed);
        target.stop_checks.cancel();
        // The load balancer's nodes learn of it over the propagation lag: until then new
        // requests still reach it, whatever the deregistration delay.
        // A target already out of rotation (unhealthy) stays out.
        let propagation = self.settings().propagation;
        let routed = self
            .routing
            .load()
            .targets
            .iter()
            .any(|t| Arc::ptr_eq(t, &target));
        if routed && !propagation.is_zero() {
            self.lingering().push(Arc::clone(&target));
            let me = self.me.clone();
            let lingering = Arc::clone(&target);
            let clock = self.clock;
            tokio::spawn(async move {
                clock.sleep(propagation).await;
                if let Some(tg) = me.upgrade() {
                    tg.lingering().retain(|t| !Arc::ptr_eq(t, &lingering));
                    tg.rebuild();
                }
            });
        }
        self.rebuild();
        self.events.emit(EventKind::TargetHealth {
            target_group: self.name.clone(),
            target: addr,
            state: TargetHealth::Draining,
            reason: Some("Target.DeregistrationInProgress"),
        });
        let delay = self.settings().deregistration_delay;
        let me = self.me.clone();
        let gone = CancellationToken::new();
        let done = gone.clone();
        let clock = self.clock;
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            clock.sleep(delay).await;
            if let Some(tg) = me.upgrade() {
                tg.remove(&target);
            }
            done.cancel();
            // A non-zero delay cuts no request sooner than MIN_REAL_DRAIN after the
            // deregistration began (see there); the target is gone meanwhile.
            if !delay.is_zero() {
                tokio::time::sleep_until(began + MIN_REAL_DRAIN).await;
            }
            let cut_off = target.in_flight();
            target.cut_off.cancel();
            if let Some(tg) = me.upgrade() {
                tg.events.emit(EventKind::TargetDeregistered {
                    target_group: tg.name.clone(),
                    target: target.addr,
                    cut_off,
                });
            }
        });
        Some(gone)
    }

    /// Takes a deregistered target out of the group; its requests still in flight are cut off
    /// by the caller.
    fn remove(&self, target: &Arc<Target>) {
        target.stop_checks.cancel();
        target.set_status(TargetHealth::Unused, Some("Target.NotRegistered"));
        self.targets().retain(|t| !Arc::ptr_eq(t, target));
        self.rebuild();
    }

    /// Removes every target at once (the group is being deleted or localaws is stopping).
    pub fn clear(&self) {
        self.lingering().clear();
        let all: Vec<_> = self.targets().drain(..).collect();
        for t in &all {
            t.stop_checks.cancel();
            t.cut_off.cancel();
        }
        self.rebuild();
    }

    fn set_health(&self, target: &Target, health: TargetHealth, reason: Option<&'static str>) {
        let current = target.status();
        if matches!(
            current.health,
            TargetHealth::Draining | TargetHealth::Unused
        ) {
            return;
        }
        target.set_status(health, reason);
        if current.health != health {
            self.rebuild();
            self.events.emit(EventKind::TargetHealth {
                target_group: self.name.clone(),
                target: target.addr,
                state: health,
                reason,
            });
        }
    }

    /// Recomputes the routing snapshot from the targets' states.
    fn rebuild(&self) {
        let targets = self.targets();
        let healthy: Vec<_> = targets
            .iter()
            .filter(|t| t.health() == TargetHealth::Healthy)
            .cloned()
            .collect();
        let lingering = self.lingering().clone();
        let mut routing = if healthy.is_empty() {
            let registered: Vec<_> = targets
                .iter()
                .filter(|t| matches!(t.health(), TargetHealth::Initial | TargetHealth::Unhealthy))
                .cloned()
                .collect();
            Routing {
                fail_open: !registered.is_empty(),
                targets: registered,
            }
        } else {
            Routing {
                targets: healthy,
                fail_open: false,
            }
        };
        routing.targets.extend(lingering);
        self.routing.store(Arc::new(routing));
    }
}

/// The health-check loop of one target: first check at once, then every interval, until the
/// target drains or is removed.
async fn health_checks(tg: Weak<TargetGroup>, target: Arc<Target>, clock: Clock) {
    let registered = tokio::time::Instant::now();
    let mut tracker = {
        let Some(group) = tg.upgrade() else { return };
        let s = group.settings();
        group.set_health(
            &target,
            TargetHealth::Initial,
            Some("Elb.InitialHealthChecking"),
        );
        HealthTracker::new(s.healthy_threshold, s.unhealthy_threshold)
    };
    loop {
        let Some(settings) = tg.upgrade().map(|g| g.settings().clone()) else {
            return;
        };
        let timeout = clock.timeout(settings.timeout);
        let result = tokio::select! {
            () = target.stop_checks.cancelled() => return,
            r = health::check(target.addr, &settings.path, timeout, &settings.matcher) => r,
        };
        let Some(group) = tg.upgrade() else { return };
        // A process still starting refuses connections: in `initial`, such failures count only
        // after MIN_REAL_START of real time (see there).
        let starting = tracker.state() == TargetHealth::Initial
            && result == Err(CheckFailure::Failed)
            && registered.elapsed() < MIN_REAL_START;
        let reason = result.err().map(|f| f.reason());
        let change = if starting {
            None
        } else {
            tracker.record(result.is_ok())
        };
        match change {
            Some(state) => {
                let reason = match state {
                    TargetHealth::Healthy => None,
                    _ => reason,
                };
                group.set_health(&target, state, reason);
            }
            None if tracker.state() == TargetHealth::Unhealthy && reason.is_some() => {
                group.set_health(&target, TargetHealth::Unhealthy, reason);
            }
            None => {}
        }
        drop(group);
        tokio::select! {
            () = target.stop_checks.cancelled() => return,
            () = clock.sleep(settings.interval) => {}
        }
    }
}
