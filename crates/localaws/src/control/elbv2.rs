//! Elastic Load Balancing v2 as the control plane offers it to the API: the data plane's load
//! balancers, listeners and target groups described as plain values, targets registered and
//! deregistered, a listener's weighted forward changed. The wire layer reads these views and
//! never the data plane's own types; ARNs are the wire layer's business, names are these.

use std::net::{IpAddr, SocketAddr};

use stack::WeightedTargetGroup;

use super::{Control, Lifecycle};

/// A load balancer of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadBalancerView {
    /// Its name.
    pub(crate) name: String,
    /// The loopback address its listeners bind (its DNS name here).
    pub(crate) address: IpAddr,
}

/// A listener, as it forwards now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerView {
    /// Its load balancer's name.
    pub(crate) load_balancer: String,
    /// Its name in the stack.
    pub(crate) name: String,
    /// The port it listens on.
    pub(crate) port: u16,
    /// `HTTP` or `HTTPS`.
    pub(crate) protocol: &'static str,
    /// Whether it terminates TLS.
    pub(crate) https: bool,
    /// Its forward action: target group name and weight, in order.
    pub(crate) weights: Vec<(String, u32)>,
}

/// A target group and its health-check settings (seconds are simulated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetGroupView {
    /// Its name.
    pub(crate) name: String,
    /// Its port (only a group attached to the Auto Scaling group has one).
    pub(crate) port: Option<u16>,
    /// Health-check interval, seconds.
    pub(crate) interval_secs: u64,
    /// Health-check timeout, seconds.
    pub(crate) timeout_secs: u64,
    /// Passes to become healthy.
    pub(crate) healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub(crate) unhealthy_threshold: u32,
    /// Health-check path.
    pub(crate) path: String,
    /// Success codes, as the stack writes them (`200`, `200-299`).
    pub(crate) matcher: String,
    /// The load balancers whose listeners forward to it, by name.
    pub(crate) load_balancers: Vec<String>,
}

/// A registered target and its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetHealthView {
    /// Where requests go.
    pub(crate) addr: SocketAddr,
    /// `initial`, `healthy`, `unhealthy`, `draining`, ...
    pub(crate) state: String,
    /// ELBv2's reason code, when not healthy.
    pub(crate) reason: Option<&'static str>,
}

impl Control {
    /// Every load balancer, in the stack's order.
    pub(crate) fn load_balancers(&self) -> Vec<LoadBalancerView> {
        self.stack()
            .load_balancers
            .iter()
            .map(|lb| LoadBalancerView {
                name: lb.name.clone(),
                address: lb.address,
            })
            .collect()
    }

    /// Every listener, as it forwards now.
    pub(crate) fn listeners(&self) -> Vec<ListenerView> {
        self.plane()
            .listeners()
            .iter()
            .map(|l| ListenerView {
                load_balancer: l.load_balancer.clone(),
                name: l.name.clone(),
                port: l.addr().port(),
                protocol: l.protocol(),
                https: l.is_https(),
                weights: l.forward().weights(),
            })
            .collect()
    }

    /// Every target group, with its settings.
    pub(crate) fn target_groups(&self) -> Vec<TargetGroupView> {
        let stack = self.stack();
        self.plane()
            .target_groups()
            .map(|g| {
                let s = g.settings();
                TargetGroupView {
                    name: g.name.clone(),
                    port: stack.target_group(&g.name).and_then(|t| t.port),
                    interval_secs: s.interval.as_secs(),
                    timeout_secs: s.timeout.as_secs(),
                    healthy_threshold: s.healthy_threshold,
                    unhealthy_threshold: s.unhealthy_threshold,
                    path: s.path.clone(),
                    matcher: s.matcher.to_string(),
                    load_balancers: stack
                        .load_balancers_forwarding_to(&g.name)
                        .map(|lb| lb.name.clone())
                        .collect(),
                }
            })
            .collect()
    }

    /// The targets registered in target group `group` and their health; `None` when there is
    /// no such group.
    pub(crate) fn target_health(&self, group: &str) -> Option<Vec<TargetHealthView>> {
        let tg = self.plane().target_groups().find(|g| g.name == group)?;
        Some(
            tg.describe()
                .into_iter()
                .map(|t| TargetHealthView {
                    addr: t.addr,
                    state: t.health.to_string(),
                    reason: t.reason,
                })
                .collect(),
        )
    }

    /// Registers target `id` at `addr` in target group `group`.
    pub(crate) fn register_target(
        &self,
        group: &str,
        id: String,
        addr: SocketAddr,
    ) -> Result<(), String> {
        let tg = self
            .plane()
            .target_groups()
            .find(|g| g.name == group)
            .ok_or_else(|| format!("no target group {group}"))?;
        tg.register(id, addr)
    }

    /// Begins deregistering the target at `addr` from target group `group` (it drains for the
    /// group's delay); false when it is not registered there.
    pub(crate) fn deregister_target(&self, group: &str, addr: SocketAddr) -> bool {
        self.plane()
            .target_groups()
            .find(|g| g.name == group)
            .is_some_and(|tg| tg.deregister(addr).is_some())
    }

    /// Changes listener `listener`'s weighted forward while traffic flows.
    pub(crate) fn set_listener_weights(
        &self,
        listener: &str,
        weights: &[WeightedTargetGroup],
    ) -> Result<(), String> {
        self.plane()
            .set_weights(listener, weights)
            .map_err(|e| e.to_string())
    }

    /// The instance that has (or last had) address `ip`.
    pub(crate) fn instance_at(&self, ip: IpAddr) -> Option<String> {
        self.read(|st| {
            st.instances
                .values()
                .filter(|i| i.ip == ip)
                .max_by_key(|i| i.launched)
                .map(|i| i.id.clone())
        })
    }

    /// The address of instance `id`, unless it has terminated (or never was).
    pub(crate) fn live_instance_ip(&self, id: &str) -> Option<IpAddr> {
        self.read(|st| {
            st.instances
                .get(id)
                .filter(|i| i.lifecycle != Lifecycle::Terminated)
                .map(|i| i.ip)
        })
    }
}
