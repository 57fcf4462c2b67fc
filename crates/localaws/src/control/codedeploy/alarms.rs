//! CloudWatch-like alarms on the target groups' 5xx counters, evaluated once per simulated
//! period; a deployment group's alarm in `ALARM` stops its deployment.

use std::time::SystemTime;

use tokio::time::Instant;

use crate::control::{Ctx, State, wall};
use stack::AlarmConfig;

/// An alarm's state (`StateValue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    /// `INSUFFICIENT_DATA`: not evaluated yet.
    InsufficientData,
    /// `OK`.
    Ok,
    /// `ALARM`: stops the deployments of the groups that name it.
    Alarm,
}

impl AlarmState {
    /// As CloudWatch writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientData => "INSUFFICIENT_DATA",
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
        }
    }
}

impl std::fmt::Display for AlarmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CloudWatch-like alarm.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// Its settings.
    pub config: AlarmConfig,
    /// Its state.
    pub state: AlarmState,
    /// Why.
    pub reason: String,
    /// When the state last changed.
    pub updated: SystemTime,
    /// Consecutive breaching periods.
    pub(super) breaching: u32,
    /// Current period's start (real).
    pub(super) period_start: Instant,
    /// The counter's value when the period started.
    pub(super) counter_start: u64,
    /// Largest sample this period (gauges).
    pub(super) gauge_max: u64,
    /// Whether the period under way already breaches the threshold (it will be evaluated at
    /// its end).
    pub(super) pending: bool,
}

impl Alarm {
    /// Neither in `ALARM` nor about to be: a deployment created now is not stopped by an
    /// earlier breach (a target that was unhealthy for a moment while the fleet came up).
    pub fn quiet(&self) -> bool {
        self.state != AlarmState::Alarm && !self.pending
    }
}
pub(super) fn alarms(state: &mut State, ctx: &Ctx<'_>) {
    for a in &mut state.codedeploy.alarms {
        let Ok(tg) = ctx.plane.target_group(&a.config.target_group) else {
            continue;
        };
        let metrics = tg.metrics();
        let counter = match a.config.metric.as_str() {
            "HTTPCode_Target_5XX_Count" => Some(metrics.target_5xx),
            "HTTPCode_ELB_5XX_Count" => Some(metrics.elb_5xx),
            _ => None,
        };
        if counter.is_none() {
            let unhealthy = tg
                .describe()
                .iter()
                .filter(|t| t.health == crate::dataplane::TargetHealth::Unhealthy)
                .count() as u64;
            a.gauge_max = a.gauge_max.max(unhealthy);
        }
        #[allow(clippy::cast_precision_loss)]
        let so_far = match counter {
            Some(now) => now.saturating_sub(a.counter_start),
            None => a.gauge_max,
        } as f64;
        a.pending = so_far > a.config.threshold;
        if !ctx.elapsed(a.period_start, a.config.period) {
            continue;
        }
        a.pending = false;
        let value = match counter {
            Some(now) => {
                let v = now.saturating_sub(a.counter_start);
                a.counter_start = now;
                v
            }
            None => std::mem::take(&mut a.gauge_max),
        };
        a.period_start = ctx.now;
        #[allow(clippy::cast_precision_loss)]
        let breach = value as f64 > a.config.threshold;
        a.breaching = if breach { a.breaching + 1 } else { 0 };
        let state = if a.breaching >= a.config.evaluation_periods {
            AlarmState::Alarm
        } else {
            AlarmState::Ok
        };
        if state != a.state {
            a.reason = format!(
                "Threshold Crossed: {} datapoint(s) [{value}] {} the threshold ({})",
                a.config.evaluation_periods.min(a.breaching.max(1)),
                if breach {
                    "were greater than"
                } else {
                    "were not greater than"
                },
                a.config.threshold
            );
            a.state = state;
            a.updated = wall();
            ctx.events.emit(
                "cloudwatch",
                format!(
                    "alarm {} {state}: {} = {value} in the last {} s",
                    a.config.name, a.config.metric, a.config.period
                ),
            );
        }
    }
}
