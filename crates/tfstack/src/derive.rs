//! The `localaws` stack a Terraform configuration describes: `orchestrate rehearse --terraform
//! DIR` rehearses *that* configuration instead of the embedded demo stack.
//!
//! The configuration is read by [`crate::terraform`] (local modules, variables, tfvars, locals,
//! module outputs, container definitions from `jsonencode`, `file` or `templatefile`). References between resources are
//! followed symbolically: `target_group_arn = var.target_group_arn` in a child module leads,
//! through the calling module block and the traffic module's `target_group_arns` output, to
//! `aws_lb_target_group.blue`, whose `name` is then evaluated. `count` and `for_each` are
//! expanded where they are known (`each.key`, `each.value`, `count.index`), `dynamic` blocks
//! where their `for_each` is.
//!
//! A setting left out gets the AWS or provider default (as `terraform apply` would). A setting
//! written but not known before apply (a data source, remote state, a resource attribute, a
//! function the reader does not know) is an [`Assumption`]: where it is, why it is unknown and
//! the value used instead. Nothing is guessed silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

use hcl::Value;
use hcl::expr::{Expression, ObjectKey, TraversalOperator};
use stack::{
    AlarmConfig, AmiConfig, ApplicationConfig, AutoRollback, AutoScalingGroupConfig,
    CapacityProviderConfig, ClusterConfig, CodeDeployConfig, ContainerDefinition,
    ContainerHealthCheck, DeploymentConfigConfig, DeploymentGroupConfig, DeploymentReady,
    HealthCheckConfig, Image, KeyValue, LaunchTemplateConfig, LaunchTemplateData,
    LaunchTemplateSpec, LifecycleHookConfig, LinuxParameters, ListenerConfig, LoadBalancerConfig,
    PortMapping, ServiceConfig, ServiceLoadBalancer, Stack, TargetGroupConfig, TaskDefinition,
    WeightedTargetGroup, defaults,
};

use crate::terraform::{Block, Config, Location, Module, Resource, TerraformError, UNKNOWN};

/// The AMI a launch template gets when its `image_id` is not known before apply (an SSM
/// parameter, a data source): the one `localaws`'s default stack boots.
pub const ASSUMED_AMI: &str = "ami-0ecs000000000001";

/// Why a stack could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    /// The configuration could not be read.
    #[error(transparent)]
    Terraform(#[from] TerraformError),
    /// Something the rehearsal cannot run without is missing.
    #[error("{0}")]
    Missing(String),
    /// The derived stack is not a valid `localaws` stack.
    #[error("the derived stack is invalid: {0}")]
    Invalid(String),
    /// A bad `--image` flag.
    #[error(
        "invalid --image {0:?}: expected NAME=COMMAND (e.g. web=/usr/local/bin/web) or NAME=docker:IMAGE (e.g. web=docker:my/web:1.2)"
    )]
    Image(String),
    /// An `--image` that no container of the configuration matches.
    #[error(
        "--image {name}=...: no container of the configuration has an image whose repository is {name:?} (nor, where the image is known only after apply, the name {name:?}); its containers: {containers}"
    )]
    ImageUnmatched {
        /// The flag's NAME.
        name: String,
        /// The containers found, each with its image.
        containers: String,
    },
}

/// A value the configuration does not fix before apply, and what the stack uses instead.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Assumption {
    /// Where the setting is (or the resource, when a default is assumed for it).
    pub location: Location,
    /// The resource address and setting (`module.compute.aws_launch_template.this image_id`).
    pub setting: String,
    /// Why it is not known (`data source data.aws_ssm_parameter.ecs_ami`).
    pub reason: String,
    /// The value the derived stack uses.
    pub used: String,
}

impl fmt::Display for Assumption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}; using {}",
            self.location, self.setting, self.reason, self.used
        )
    }
}

/// The instance refresh preferences of the Auto Scaling group (`instance_refresh.preferences`,
/// with AWS's defaults): what `orchestrate refresh` starts refreshes with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RefreshPrefs {
    /// `min_healthy_percentage` (90).
    pub min_healthy: i32,
    /// `max_healthy_percentage` (100).
    pub max_healthy: i32,
    /// `instance_warmup`, seconds.
    pub instance_warmup: Option<i32>,
    /// `checkpoint_percentages`.
    pub checkpoints: Vec<i32>,
    /// `checkpoint_delay`, seconds.
    pub checkpoint_delay: Option<i32>,
    /// `auto_rollback`.
    pub auto_rollback: bool,
    /// `skip_matching`.
    pub skip_matching: bool,
    /// `scale_in_protected_instances` (`Ignore`).
    pub scale_in_protected: String,
}

impl Default for RefreshPrefs {
    fn default() -> Self {
        RefreshPrefs {
            min_healthy: defaults::REFRESH_MIN_HEALTHY_PERCENTAGE as i32,
            max_healthy: defaults::REFRESH_MAX_HEALTHY_PERCENTAGE as i32,
            instance_warmup: None,
            checkpoints: Vec::new(),
            checkpoint_delay: None,
            auto_rollback: false,
            skip_matching: false,
            scale_in_protected: "Ignore".into(),
        }
    }
}

/// What [`derive`] found.
#[derive(Debug, Clone)]
pub struct Derived {
    /// The stack, valid for `localaws`.
    pub stack: Stack,
    /// The Auto Scaling group's instance refresh preferences.
    pub refresh: RefreshPrefs,
    /// Every value not known before apply, with what was used instead.
    pub assumptions: Vec<Assumption>,
    /// Stack element (`service demo-svc`, `target group demo-tg-blue`) → the resource it
    /// comes from.
    pub sources: BTreeMap<String, (String, Location)>,
}

/// Options of [`derive`].
#[derive(Debug, Clone, Default)]
pub struct DeriveOptions {
    /// `--image NAME=COMMAND`: containers whose image repository is `NAME` run `COMMAND`
    /// (split on whitespace) instead of the project's `server`.
    pub images: Vec<(String, Vec<String>)>,
    /// Simulated seconds per real second of the stack.
    pub time_scale: Option<f64>,
}

impl DeriveOptions {
    /// Parses one `--image NAME=COMMAND`.
    pub fn parse_image(flag: &str) -> Result<(String, Vec<String>), DeriveError> {
        let (name, command) = flag
            .split_once('=')
            .ok_or_else(|| DeriveError::Image(flag.to_owned()))?;
        let command: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if name.trim().is_empty() || command.is_empty() || name.contains(char::is_whitespace) {
            return Err(DeriveError::Image(flag.to_owned()));
        }
        Ok((name.to_owned(), command))
    }
}

/// Reads the configuration at `dir` and derives its stack.
pub fn derive_dir(dir: &Path, options: &DeriveOptions) -> Result<Derived, DeriveError> {
    let cfg = Config::load(dir)?;
    derive(&cfg, options)
}

/// Derives the stack a configuration describes.
pub fn derive(cfg: &Config, options: &DeriveOptions) -> Result<Derived, DeriveError> {
    let mut d = Deriver::new(cfg);
    let stack = d.stack(options)?;
    if let Some((name, _)) = options
        .images
        .iter()
        .find(|(name, _)| !d.images_used.contains(name))
    {
        return Err(DeriveError::ImageUnmatched {
            name: name.clone(),
            containers: if d.containers.is_empty() {
                "none".to_owned()
            } else {
                d.containers.join(", ")
            },
        });
    }
    let mut assumptions = d.assumptions;
    assumptions.sort_by(|a, b| (&a.location, &a.setting).cmp(&(&b.location, &b.setting)));
    assumptions.dedup();
    Ok(Derived {
        stack,
        refresh: d.refresh,
        assumptions,
        sources: d.sources,
    })
}

/// One step into a value: `.name` or `["blue"]` / `[0]`.
#[derive(Debug, Clone, PartialEq)]
enum Access {
    Attr(String),
    Key(Value),
}

/// One instance of a resource: `count`/`for_each` expanded.
#[derive(Debug, Clone)]
struct Inst<'a> {
    res: Resource<'a>,
    /// `each.key`/`each.value` (for_each) or `count.index`.
    each: Option<(Value, Value)>,
    count: Option<u64>,
}

impl<'a> Inst<'a> {
    fn extra(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if let Some((k, v)) = &self.each {
            let mut m = hcl::Map::new();
            m.insert("key".to_owned(), k.clone());
            m.insert("value".to_owned(), v.clone());
            out.push(("each", Value::Object(m)));
        }
        if let Some(i) = self.count {
            let mut m = hcl::Map::new();
            m.insert("index".to_owned(), Value::from(i));
            out.push(("count", Value::Object(m)));
        }
        out
    }

    fn address(&self) -> String {
        match (&self.each, self.count) {
            (Some((Value::String(k), _)), _) => format!("{}[{k:?}]", self.res.address()),
            (Some((k, _)), _) => format!("{}[{k}]", self.res.address()),
            (None, Some(i)) => format!("{}[{i}]", self.res.address()),
            (None, None) => self.res.address(),
        }
    }

    fn same(&self, other: &Resource<'_>) -> bool {
        self.res.address() == other.address()
    }
}

/// What an expression refers to.
#[derive(Debug, Clone)]
enum Sym<'a> {
    /// A resource (and the attribute path read from it).
    Res(Resource<'a>, Vec<Access>),
    /// A known value.
    Val(Value),
    /// Not known before apply, and why.
    Unknown(String),
}

const MAX_HOPS: usize = 48;

struct Deriver<'a> {
    /// Module address → (parent module, the calling `module` block).
    parents: HashMap<String, (&'a Module, &'a Block)>,
    resources: Vec<Resource<'a>>,
    assumptions: Vec<Assumption>,
    sources: BTreeMap<String, (String, Location)>,
    refresh: RefreshPrefs,
    /// The `--image` names given, and those a container matched.
    image_flags: BTreeSet<String>,
    images_used: BTreeSet<String>,
    /// Every container met: its name and image, as an unmatched `--image` lists them.
    containers: Vec<String>,
}

impl<'a> Deriver<'a> {
    fn new(cfg: &'a Config) -> Self {
        let mut parents = HashMap::new();
        for m in cfg.modules() {
            for c in &m.children {
                let name = c.address.rsplit('.').next().unwrap_or_default();
                if let Some(call) = m.blocks.iter().find(|b| {
                    b.kind == "module" && b.labels.first().map(String::as_str) == Some(name)
                }) {
                    parents.insert(c.address.clone(), (m, call));
                }
            }
        }
        Deriver {
            parents,
            resources: cfg.resources(),
            assumptions: Vec::new(),
            sources: BTreeMap::new(),
            refresh: RefreshPrefs::default(),
            image_flags: BTreeSet::new(),
            images_used: BTreeSet::new(),
            containers: Vec::new(),
        }
    }

    fn assume(&mut self, location: &Location, setting: String, reason: String, used: String) {
        self.assumptions.push(Assumption {
            location: location.clone(),
            setting,
            reason,
            used,
        });
    }

    // ---------------------------------------------------------------- expansion

    /// The instances of every resource of one type.
    fn instances(&mut self, kind: &str) -> Vec<Inst<'a>> {
        let list: Vec<Resource<'a>> = self
            .resources
            .iter()
            .filter(|r| r.kind() == kind)
            .copied()
            .collect();
        let mut out = Vec::new();
        for r in list {
            out.extend(self.expand(r));
        }
        out
    }

    fn expand(&mut self, r: Resource<'a>) -> Vec<Inst<'a>> {
        if let Some(a) = r.block.attribute("count") {
            return match r
                .module
                .eval(&a.expr)
                .as_ref()
                .and_then(crate::terraform::number)
            {
                Some(n) if n >= 0.0 => (0..n as u64)
                    .map(|i| Inst {
                        res: r,
                        each: None,
                        count: Some(i),
                    })
                    .collect(),
                _ => {
                    self.assume(
                        &a.location,
                        format!("{} count", r.address()),
                        why_unknown(&a.expr),
                        "1".into(),
                    );
                    vec![Inst {
                        res: r,
                        each: None,
                        count: Some(0),
                    }]
                }
            };
        }
        if let Some(a) = r.block.attribute("for_each") {
            let pairs: Option<Vec<(Value, Value)>> = match r.module.eval(&a.expr) {
                Some(Value::Object(m)) => {
                    Some(m.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
                }
                Some(Value::Array(items)) if items.iter().all(|v| v.as_str() != Some(UNKNOWN)) => {
                    Some(items.into_iter().map(|v| (v.clone(), v)).collect())
                }
                _ => None,
            };
            return match pairs {
                Some(p) => p
                    .into_iter()
                    .map(|each| Inst {
                        res: r,
                        each: Some(each),
                        count: None,
                    })
                    .collect(),
                None => {
                    self.assume(
                        &a.location,
                        format!("{} for_each", r.address()),
                        why_unknown(&a.expr),
                        "one instance".into(),
                    );
                    vec![Inst {
                        res: r,
                        each: Some((Value::String("0".into()), Value::String(UNKNOWN.into()))),
                        count: None,
                    }]
                }
            };
        }
        vec![Inst {
            res: r,
            each: None,
            count: None,
        }]
    }

    /// The nested blocks of type `kind` of `block` (a block of `inst`), `dynamic` ones expanded
    /// where their `for_each` is known (their `content`).
    fn blocks(&mut self, inst: &Inst<'a>, block: &'a Block, kind: &str) -> Vec<&'a Block> {
        let mut out = Vec::new();
        for b in &block.blocks {
            if b.kind == kind {
                out.push(b);
            } else if b.kind == "dynamic" && b.labels.first().map(String::as_str) == Some(kind) {
                let Some(content) = b.block("content") else {
                    continue;
                };
                let n = match b.attribute("for_each") {
                    Some(a) => match inst.res.module.eval_with(&a.expr, &inst.extra()) {
                        Some(Value::Array(v)) => Some(v.len()),
                        Some(Value::Object(m)) => Some(m.len()),
                        _ => {
                            self.assume(
                                &a.location,
                                format!("{} dynamic \"{kind}\" for_each", inst.address()),
                                why_unknown(&a.expr),
                                "one block".into(),
                            );
                            None
                        }
                    },
                    None => Some(0),
                };
                if n.is_none_or(|n| n > 0) {
                    out.push(content);
                }
            }
        }
        out
    }

    // ---------------------------------------------------------------- evaluation

    /// The expression of the attribute at a dotted path of `block` (blocks are the first of
    /// their type).
    fn attr(block: &'a Block, path: &str) -> Option<&'a crate::terraform::Attribute> {
        let mut b = block;
        let mut parts = path.split('.').peekable();
        while let Some(p) = parts.next() {
            if parts.peek().is_none() {
                return b.attribute(p);
            }
            b = b.block(p)?;
        }
        None
    }

    /// Resolves an attribute of a block of `inst`: `None` when it is not written.
    fn sym(&self, inst: &Inst<'a>, block: &'a Block, path: &str) -> Option<(Sym<'a>, Location)> {
        let a = Self::attr(block, path)?;
        Some((self.resolve_inst(inst, &a.expr), a.location.clone()))
    }

    fn resolve_inst(&self, inst: &Inst<'a>, expr: &'a Expression) -> Sym<'a> {
        if let Some(v) = inst.res.module.eval_with(expr, &inst.extra())
            && !contains_unknown(&v)
        {
            return Sym::Val(v);
        }
        self.resolve(inst.res.module, expr, Vec::new(), Some(inst), 0)
    }

    /// Follows `expr` in `m` (then `rest`) to a value or a resource.
    fn resolve(
        &self,
        m: &'a Module,
        expr: &'a Expression,
        rest: Vec<Access>,
        inst: Option<&Inst<'a>>,
        hops: usize,
    ) -> Sym<'a> {
        if hops > MAX_HOPS {
            return Sym::Unknown("references nest too deep".into());
        }
        let extra = inst.map(Inst::extra).unwrap_or_default();
        let known = |v: Value, rest: &[Access]| -> Sym<'a> {
            match apply(v, rest) {
                Some(v) if !contains_unknown(&v) => Sym::Val(v),
                _ => Sym::Unknown(why_unknown(expr)),
            }
        };
        match expr {
            Expression::Parenthesis(e) => self.resolve(m, e, rest, inst, hops + 1),
            Expression::Conditional(c) => match m.eval_with(&c.cond_expr, &extra) {
                Some(Value::Bool(true)) => self.resolve(m, &c.true_expr, rest, inst, hops + 1),
                Some(Value::Bool(false)) => self.resolve(m, &c.false_expr, rest, inst, hops + 1),
                _ => Sym::Unknown(why_unknown(&c.cond_expr)),
            },
            Expression::Object(obj) if !rest.is_empty() => {
                let want = match &rest[0] {
                    Access::Attr(a) => a.clone(),
                    Access::Key(Value::String(s)) => s.clone(),
                    Access::Key(_) => return Sym::Unknown(why_unknown(expr)),
                };
                for (k, v) in obj {
                    let key = match k {
                        ObjectKey::Identifier(id) => Some(id.to_string()),
                        ObjectKey::Expression(e) => m
                            .eval_with(e, &extra)
                            .and_then(|v| v.as_str().map(str::to_owned)),
                        _ => None,
                    };
                    if key.as_deref() == Some(want.as_str()) {
                        return self.resolve(m, v, rest[1..].to_vec(), inst, hops + 1);
                    }
                }
                Sym::Unknown(format!("no key {want:?}"))
            }
            Expression::Array(items) if !rest.is_empty() => {
                let i = match &rest[0] {
                    Access::Key(v) => crate::terraform::number(v),
                    Access::Attr(_) => None,
                };
                match i.and_then(|i| items.get(i as usize)) {
                    Some(e) => self.resolve(m, e, rest[1..].to_vec(), inst, hops + 1),
                    None => Sym::Unknown(why_unknown(expr)),
                }
            }
            Expression::Variable(v) => self.root(m, v.as_str(), &rest, inst, hops, expr),
            Expression::Traversal(t) => {
                let mut path = Vec::new();
                for op in &t.operators {
                    match op {
                        TraversalOperator::GetAttr(id) => path.push(Access::Attr(id.to_string())),
                        TraversalOperator::Index(e) => match m.eval_with(e, &extra) {
                            Some(v) if !contains_unknown(&v) => path.push(Access::Key(v)),
                            _ => return Sym::Unknown(why_unknown(e)),
                        },
                        TraversalOperator::LegacyIndex(i) => {
                            path.push(Access::Key(Value::from(*i)))
                        }
                        _ => return Sym::Unknown(why_unknown(expr)),
                    }
                }
                path.extend(rest);
                match &t.expr {
                    Expression::Variable(v) => self.root(m, v.as_str(), &path, inst, hops, expr),
                    other => self.resolve(m, other, path, inst, hops + 1),
                }
            }
            other => match m.eval_with(other, &extra) {
                Some(v) => known(v, &rest),
                None => Sym::Unknown(why_unknown(other)),
            },
        }
    }

    /// A traversal from a root name: `var`, `local`, `module`, `each`, `count`, `data`, or a
    /// resource type.
    fn root(
        &self,
        m: &'a Module,
        root: &str,
        path: &[Access],
        inst: Option<&Inst<'a>>,
        hops: usize,
        whole: &'a Expression,
    ) -> Sym<'a> {
        let attr = |i: usize| match path.get(i) {
            Some(Access::Attr(a)) => Some(a.clone()),
            Some(Access::Key(Value::String(s))) => Some(s.clone()),
            _ => None,
        };
        match root {
            "var" => {
                let Some(name) = attr(0) else {
                    return Sym::Unknown(why_unknown(whole));
                };
                if let Some((parent, call)) = self.parents.get(&m.address)
                    && let Some(a) = call.attribute(&name)
                {
                    return self.resolve(parent, &a.expr, path[1..].to_vec(), None, hops + 1);
                }
                match m.variables.get(&name) {
                    Some(v) => match apply(v.clone(), &path[1..]) {
                        Some(v) if !contains_unknown(&v) => Sym::Val(v),
                        _ => Sym::Unknown(format!("var.{name} is not known before apply")),
                    },
                    None => {
                        Sym::Unknown(format!("var.{name} has no value (no default, no tfvars)"))
                    }
                }
            }
            "local" => {
                let Some(name) = attr(0) else {
                    return Sym::Unknown(why_unknown(whole));
                };
                let found = m
                    .blocks
                    .iter()
                    .filter(|b| b.kind == "locals")
                    .find_map(|b| b.attribute(&name));
                match found {
                    Some(a) => self.resolve(m, &a.expr, path[1..].to_vec(), None, hops + 1),
                    None => Sym::Unknown(format!("no local.{name}")),
                }
            }
            "module" => {
                let (Some(name), Some(out)) = (attr(0), attr(1)) else {
                    return Sym::Unknown(why_unknown(whole));
                };
                let child_address = if m.address.is_empty() {
                    format!("module.{name}")
                } else {
                    format!("{}.module.{name}", m.address)
                };
                let Some(child) = m.children.iter().find(|c| c.address == child_address) else {
                    return Sym::Unknown(format!("module.{name} is not a local module"));
                };
                let found = child
                    .blocks
                    .iter()
                    .filter(|b| b.kind == "output" && b.labels.first() == Some(&out))
                    .find_map(|b| b.attribute("value"));
                match found {
                    Some(a) => self.resolve(child, &a.expr, path[2..].to_vec(), None, hops + 1),
                    None => Sym::Unknown(format!("module.{name} has no output {out:?}")),
                }
            }
            "each" => {
                let Some(inst) = inst else {
                    return Sym::Unknown("each outside for_each".into());
                };
                match (attr(0).as_deref(), &inst.each) {
                    (Some("key"), Some((k, _))) => match apply(k.clone(), &path[1..]) {
                        Some(v) => Sym::Val(v),
                        None => Sym::Unknown(why_unknown(whole)),
                    },
                    (Some("value"), Some((k, _))) => {
                        let Some(fe) = inst.res.block.attribute("for_each") else {
                            return Sym::Unknown(why_unknown(whole));
                        };
                        let mut p = vec![Access::Key(k.clone())];
                        p.extend(path[1..].iter().cloned());
                        self.resolve(inst.res.module, &fe.expr, p, None, hops + 1)
                    }
                    _ => Sym::Unknown(why_unknown(whole)),
                }
            }
            "data" => Sym::Unknown(data_reason(path)),
            "count" | "path" | "terraform" | "self" => Sym::Unknown(why_unknown(whole)),
            kind => {
                let Some(name) = attr(0) else {
                    return Sym::Unknown(why_unknown(whole));
                };
                let found = self
                    .resources
                    .iter()
                    .find(|r| std::ptr::eq(r.module, m) && r.kind() == kind && r.name() == name);
                match found {
                    Some(r) => {
                        // `[0]` / `["key"]` of a counted resource: the resource itself.
                        let rest: Vec<Access> = path[1..]
                            .iter()
                            .skip_while(|a| matches!(a, Access::Key(_)))
                            .cloned()
                            .collect();
                        Sym::Res(*r, rest)
                    }
                    None => Sym::Unknown(format!("no resource {kind}.{name}")),
                }
            }
        }
    }

    /// The resource an attribute refers to (`target_group_arn = aws_lb_target_group.blue.arn`).
    fn resource_of(&self, inst: &Inst<'a>, block: &'a Block, path: &str) -> Option<Resource<'a>> {
        match self.sym(inst, block, path)?.0 {
            Sym::Res(r, _) => Some(r),
            _ => None,
        }
    }

    /// A string setting: known, or resolved through a resource's own attribute (`name` of
    /// `aws_lb_target_group.blue`). `None` when not written.
    fn string(
        &mut self,
        inst: &Inst<'a>,
        block: &'a Block,
        path: &str,
    ) -> Option<Result<String, (String, Location)>> {
        let (sym, at) = self.sym(inst, block, path)?;
        Some(self.sym_string(sym).map_err(|why| (why, at)))
    }

    fn sym_string(&mut self, sym: Sym<'a>) -> Result<String, String> {
        match sym {
            Sym::Val(v) => scalar(&v).ok_or_else(|| format!("not a string: {v}")),
            Sym::Res(r, attrs) => {
                let attr = match attrs.first() {
                    Some(Access::Attr(a)) => a.clone(),
                    _ => return Err(format!("{} is known after apply", r.address())),
                };
                let own = match (r.kind(), attr.as_str()) {
                    ("aws_codedeploy_deployment_group", "deployment_group_name") => {
                        "deployment_group_name"
                    }
                    ("aws_cloudwatch_metric_alarm", "alarm_name") => "alarm_name",
                    (_, "name") | (_, "id") if r.kind() == "aws_ecs_cluster" => "name",
                    (_, "name") => "name",
                    _ => return Err(format!("{}.{attr} is known after apply", r.address())),
                };
                let inst = Inst {
                    res: r,
                    each: None,
                    count: None,
                };
                match self.sym(&inst, r.block, own) {
                    Some((s, _)) => self.sym_string(s),
                    None => Err(format!("{} has no {own}", r.address())),
                }
            }
            Sym::Unknown(why) => Err(why),
        }
    }

    /// A number setting with its default (absent → `default`, unknown → `default` and an
    /// assumption).
    fn number(&mut self, inst: &Inst<'a>, block: &'a Block, path: &str, default: f64) -> f64 {
        match self.sym(inst, block, path) {
            None => default,
            Some((Sym::Val(v), at)) => match crate::terraform::number(&v) {
                Some(n) => n,
                None => {
                    self.assume(
                        &at,
                        format!("{} {path}", inst.address()),
                        format!("not a number: {v}"),
                        fmt_num(default),
                    );
                    default
                }
            },
            Some((Sym::Res(r, _), at)) => {
                self.assume(
                    &at,
                    format!("{} {path}", inst.address()),
                    format!("an attribute of {} (known after apply)", r.address()),
                    fmt_num(default),
                );
                default
            }
            Some((Sym::Unknown(why), at)) => {
                self.assume(
                    &at,
                    format!("{} {path}", inst.address()),
                    why,
                    fmt_num(default),
                );
                default
            }
        }
    }

    /// A string setting with its default.
    fn text(&mut self, inst: &Inst<'a>, block: &'a Block, path: &str, default: &str) -> String {
        match self.string(inst, block, path) {
            None => default.to_owned(),
            Some(Ok(s)) => s,
            Some(Err((why, at))) => {
                self.assume(
                    &at,
                    format!("{} {path}", inst.address()),
                    why,
                    format!("{default:?}"),
                );
                default.to_owned()
            }
        }
    }

    fn boolean(&mut self, inst: &Inst<'a>, block: &'a Block, path: &str, default: bool) -> bool {
        match self
            .text(inst, block, path, if default { "true" } else { "false" })
            .as_str()
        {
            "true" => true,
            "false" => false,
            _ => default,
        }
    }

    /// A resource's own name (`name`, else `name_prefix`, else its label), for `what`.
    fn name(&mut self, inst: &Inst<'a>, attr: &str) -> String {
        let block = inst.res.block;
        match self.string(inst, block, attr) {
            Some(Ok(s)) if !s.is_empty() => return s,
            Some(Err((why, at))) => {
                let used = inst.res.name().to_owned();
                self.assume(
                    &at,
                    format!("{} {attr}", inst.address()),
                    why,
                    format!("{used:?}"),
                );
                return used;
            }
            _ => {}
        }
        if let Some(Ok(prefix)) = self.string(inst, block, "name_prefix") {
            let at = Self::attr(block, "name_prefix")
                .map_or_else(|| block.location.clone(), |a| a.location.clone());
            self.assume(
                &at,
                format!("{} name", inst.address()),
                "name_prefix: AWS appends a random suffix".into(),
                format!("{prefix:?}"),
            );
            return prefix;
        }
        let used = inst.res.name().to_owned();
        self.assume(
            &block.location,
            format!("{} {attr}", inst.address()),
            format!("no {attr}: AWS generates one"),
            format!("{used:?}"),
        );
        used
    }

    fn source(&mut self, element: String, inst: &Inst<'a>) {
        self.sources
            .insert(element, (inst.address(), inst.res.block.location.clone()));
    }

    // ---------------------------------------------------------------- the stack

    #[expect(
        clippy::too_many_lines,
        reason = "the derivation's driver, one service mapper after another in dependency order"
    )]
    fn stack(&mut self, options: &DeriveOptions) -> Result<Stack, DeriveError> {
        let embedded = Stack::embedded().map_err(|e| DeriveError::Invalid(e.to_string()))?;
        let mut stack = Stack {
            time_scale: options.time_scale.unwrap_or(embedded.time_scale),
            cluster: ClusterConfig::default(),
            images: BTreeMap::new(),
            task_definitions: Vec::new(),
            target_groups: Vec::new(),
            load_balancers: Vec::new(),
            services: Vec::new(),
            launch_templates: Vec::new(),
            amis: embedded.amis.clone(),
            auto_scaling_group: None,
            codedeploy: None,
            alarms: Vec::new(),
            api_faults: Vec::new(),
        };
        // How long the load balancer's nodes keep routing to a deregistering target: AWS's
        // behaviour, not a setting; localaws's default.
        let propagation = embedded
            .load_balancers
            .first()
            .map_or(5, |l| l.deregistration_propagation);
        stack.images = embedded.images;
        for (name, command) in &options.images {
            stack.images.insert(name.clone(), Image::from_flag(command));
            self.image_flags.insert(name.clone());
        }

        if let Some(c) = self.instances("aws_ecs_cluster").first().cloned() {
            stack.cluster.name = self.name(&c, "name");
            self.source(format!("cluster {}", stack.cluster.name), &c);
        }

        // Target groups.
        let tgs = self.instances("aws_lb_target_group");
        let mut tg_names: Vec<(String, String)> = Vec::new(); // (address, name)
        for t in &tgs {
            let tg = self.target_group(t);
            tg_names.push((t.res.address(), tg.name.clone()));
            self.source(format!("target group {}", tg.name), t);
            stack.target_groups.push(tg);
        }
        let tg_name = |r: &Resource<'_>| {
            tg_names
                .iter()
                .find(|(a, _)| *a == r.address())
                .map(|(_, n)| n.clone())
        };

        // Task definitions and services.
        let services = self.instances("aws_ecs_service");
        let tds = self.instances("aws_ecs_task_definition");
        let mut td_family: Vec<(String, String)> = Vec::new();
        for s in &services {
            let lb = s.res.block.block("load_balancer");
            let container = lb.and_then(|b| match self.string(s, b, "container_name") {
                Some(Ok(n)) => Some(n),
                _ => None,
            });
            let td_res = self.resource_of(s, s.res.block, "task_definition");
            let td_inst = td_res.and_then(|r| tds.iter().find(|t| t.same(&r)).cloned());
            let name = self.name(s, "name");
            let Some(td_inst) = td_inst else {
                let at = s.res.get("task_definition").1;
                return Err(DeriveError::Missing(format!(
                    "{at}: {}: task_definition does not refer to an aws_ecs_task_definition of this configuration",
                    s.address()
                )));
            };
            let td = match td_family.iter().find(|(a, _)| *a == td_inst.address()) {
                Some((_, family)) => family.clone(),
                None => {
                    let td = self.task_definition(&td_inst, container.as_deref(), &stack)?;
                    td_family.push((td_inst.address(), td.family.clone()));
                    self.source(format!("task definition {}", td.family), &td_inst);
                    let family = td.family.clone();
                    stack.task_definitions.push(td);
                    family
                }
            };
            let svc = self.service(s, name, td, &tg_name, &stack)?;
            self.source(format!("service {}", svc.name), s);
            stack.services.push(svc);
        }
        if stack.services.is_empty() {
            return Err(DeriveError::Missing(
                "no aws_ecs_service: there is nothing to rehearse".into(),
            ));
        }

        // CodeDeploy first: it names the production and test listeners.
        let (codedeploy, prod_listener, test_listener) = self.codedeploy(&tg_name, &stack)?;

        // Load balancers and listeners.
        let lbs = self.instances("aws_lb");
        let listeners = self.instances("aws_lb_listener");
        let service_tg = stack
            .services
            .iter()
            .find_map(|s| s.load_balancer.as_ref().map(|l| l.target_group.clone()));
        for lb in &lbs {
            let name = self.name(lb, "name");
            let idle = self.number(
                lb,
                lb.res.block,
                "idle_timeout",
                f64::from(defaults::LB_IDLE_TIMEOUT),
            );
            let mut out = LoadBalancerConfig {
                name: name.clone(),
                address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                idle_timeout: idle as u32,
                deregistration_propagation: propagation,
                listeners: Vec::new(),
            };
            for l in &listeners {
                let Some(owner) = self.resource_of(l, l.res.block, "load_balancer_arn") else {
                    continue;
                };
                if owner.address() != lb.res.address() {
                    continue;
                }
                let forward = self.forward(l, &tg_name);
                if forward.is_empty() {
                    continue;
                }
                let addr = l.res.address();
                let lname = if prod_listener.as_deref() == Some(addr.as_str()) {
                    "production".to_owned()
                } else if test_listener.as_deref() == Some(addr.as_str()) {
                    "test".to_owned()
                } else if prod_listener.is_none()
                    && !out
                        .listeners
                        .iter()
                        .any(|x: &ListenerConfig| x.name == "production")
                    && forward
                        .iter()
                        .any(|f| Some(&f.target_group) == service_tg.as_ref())
                {
                    "production".to_owned()
                } else {
                    l.res.name().to_owned()
                };
                let port = self.number(l, l.res.block, "port", 80.0);
                self.assume(
                    &Self::attr(l.res.block, "port")
                        .map_or_else(|| l.res.block.location.clone(), |a| a.location.clone()),
                    format!("{} port", l.address()),
                    format!("port {} is served on loopback", fmt_num(port)),
                    "any free port".into(),
                );
                self.source(format!("listener {lname}"), l);
                out.listeners.push(ListenerConfig {
                    name: lname,
                    port: 0,
                    // Served as plain HTTP whatever the listener's protocol: the rehearsal's
                    // probe then needs no certificate.
                    protocol: "HTTP".into(),
                    forward,
                });
            }
            if out.listeners.is_empty() {
                continue;
            }
            self.source(format!("load balancer {name}"), lb);
            stack.load_balancers.push(out);
        }
        if !stack
            .load_balancers
            .iter()
            .any(|lb| lb.listeners.iter().any(|l| l.name == "production"))
        {
            return Err(DeriveError::Missing(
                "no aws_lb_listener forwards to the service's target group: no production listener to probe".into(),
            ));
        }

        // Alarms (after the target groups).
        let alarm_insts = self.instances("aws_cloudwatch_metric_alarm");
        for a in &alarm_insts {
            if let Some(alarm) = self.alarm(a, &tg_name) {
                stack.alarms.push(alarm);
            }
        }
        let mut codedeploy = codedeploy;
        if let Some(cd) = codedeploy.as_mut() {
            for app in &mut cd.applications {
                for g in &mut app.deployment_groups {
                    g.alarms
                        .retain(|n| stack.alarms.iter().any(|a| &a.name == n));
                }
            }
        }
        stack.codedeploy = codedeploy;

        // Compute: launch template, Auto Scaling group, capacity provider.
        self.compute(&mut stack)?;

        if let Err(e) = Stack::parse(
            &toml::to_string(&stack).map_err(|e| DeriveError::Invalid(e.to_string()))?,
            "derived stack",
        ) {
            return Err(DeriveError::Invalid(e.to_string()));
        }
        Ok(stack)
    }

    fn target_group(&mut self, t: &Inst<'a>) -> TargetGroupConfig {
        let b = t.res.block;
        let name = self.name(t, "name");
        let d = HealthCheckConfig::default();
        let hc = b.block("health_check");
        let mut health = d.clone();
        if let Some(hc) = hc {
            health.path = self.text(t, hc, "path", &d.path);
            health.interval = self.number(
                t,
                hc,
                "interval",
                f64::from(defaults::HEALTH_CHECK_INTERVAL),
            ) as u32;
            health.timeout =
                self.number(t, hc, "timeout", f64::from(defaults::HEALTH_CHECK_TIMEOUT)) as u32;
            health.healthy_threshold = self.number(
                t,
                hc,
                "healthy_threshold",
                f64::from(defaults::HEALTHY_THRESHOLD),
            ) as u32;
            health.unhealthy_threshold = self.number(
                t,
                hc,
                "unhealthy_threshold",
                f64::from(defaults::UNHEALTHY_THRESHOLD),
            ) as u32;
            health.matcher = self.text(t, hc, "matcher", &d.matcher);
        }
        TargetGroupConfig {
            name,
            deregistration_delay: self.number(
                t,
                b,
                "deregistration_delay",
                f64::from(defaults::DEREGISTRATION_DELAY),
            ) as u32,
            health_check: health,
            // Only a group attached to the Auto Scaling group needs one, and none is derived.
            port: None,
        }
    }

    fn task_definition(
        &mut self,
        t: &Inst<'a>,
        container: Option<&str>,
        stack: &Stack,
    ) -> Result<TaskDefinition, DeriveError> {
        let family = self.text(t, t.res.block, "family", t.res.name());
        let network_mode = match self.string(t, t.res.block, "network_mode") {
            Some(Ok(m)) => Some(m),
            _ => None,
        };
        let (text, at) = match self.sym(t, t.res.block, "container_definitions") {
            Some((_, at)) => {
                let a = Self::attr(t.res.block, "container_definitions");
                let v = a.and_then(|a| t.res.module.eval_with(&a.expr, &t.extra()));
                (v.and_then(|v| v.as_str().map(str::to_owned)), at)
            }
            None => (None, t.res.block.location.clone()),
        };
        let Some(text) = text else {
            return Err(DeriveError::Missing(format!(
                "{at}: {}: container_definitions cannot be evaluated statically ({})",
                t.address(),
                Self::attr(t.res.block, "container_definitions")
                    .map_or("not written".to_owned(), |a| why_unknown(&a.expr))
            )));
        };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            DeriveError::Missing(format!(
                "{at}: {}: container_definitions is not JSON: {e}",
                t.address()
            ))
        })?;
        let list = json.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return Err(DeriveError::Missing(format!(
                "{at}: {}: no container definition",
                t.address()
            )));
        }
        // The container the load balancer reaches (the service's container_name, else the
        // first) always runs: as the project's server when its image is not local.
        let serving = list
            .iter()
            .position(|c| {
                container.is_some() && c.get("name").and_then(|n| n.as_str()) == container
            })
            .unwrap_or(0);
        let mut container_definitions = Vec::new();
        for (index, c) in list.iter().enumerate() {
            if let Some(def) = self.container(t, &at, index, c, index == serving, stack) {
                container_definitions.push(def);
            }
        }
        if !container_definitions
            .iter()
            .any(ContainerDefinition::is_essential)
            && let Some(first) = container_definitions.first_mut()
        {
            first.essential = Some(true);
            self.assume(
                &at,
                format!("{} container_definitions", t.address()),
                "none of the containers run here is essential (a task needs one)".into(),
                format!("container {} essential", first.name),
            );
        }
        Ok(TaskDefinition {
            family,
            network_mode,
            container_definitions,
        })
    }

    /// Container `index` of `t`'s `container_definitions`, field by field, each unknown value
    /// with its assumption. `None` for a container the load balancer does not reach whose image
    /// is not local: it is left out (the project's server in place of a log router or a proxy
    /// would rehearse something else).
    #[expect(
        clippy::too_many_lines,
        reason = "maps an ECS container definition field by field, each with its own assumption when unknown"
    )]
    fn container(
        &mut self,
        t: &Inst<'a>,
        at: &Location,
        index: usize,
        c: &serde_json::Value,
        serving: bool,
        stack: &Stack,
    ) -> Option<ContainerDefinition> {
        let setting = |key: &str| format!("{} container_definitions[{index}].{key}", t.address());
        let known = |v: &serde_json::Value| v.as_str() != Some(UNKNOWN);
        let num = |v: Option<&serde_json::Value>| -> Option<f64> {
            match v? {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let name = c
            .get("name")
            .and_then(|v| v.as_str())
            .filter(|s| *s != UNKNOWN)
            .map(str::to_owned)
            .unwrap_or_else(|| "app".to_owned());
        if c.get("name")
            .and_then(|v| v.as_str())
            .is_none_or(|s| s == UNKNOWN)
        {
            self.assume(
                at,
                setting("name"),
                "not known before apply".into(),
                "\"app\"".into(),
            );
        }
        // The image: --image NAME=... by repository name, or by container name where the image
        // is known only after apply; else the project's server.
        let reference = c.get("image").and_then(|v| v.as_str()).unwrap_or(UNKNOWN);
        let repo = reference.split('@').next().unwrap_or(reference);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        let local = last.split(':').next().unwrap_or(last);
        self.containers.push(if reference == UNKNOWN {
            format!("{name} (image known after apply)")
        } else {
            format!("{name} (image {reference})")
        });
        let image = if reference != UNKNOWN && stack.images.contains_key(reference) {
            if self.image_flags.contains(reference) {
                self.images_used.insert(reference.to_owned());
            }
            reference.to_owned()
        } else if reference != UNKNOWN && local != "server" && stack.images.contains_key(local) {
            if self.image_flags.contains(local) {
                self.images_used.insert(local.to_owned());
            }
            local.to_owned()
        } else if reference == UNKNOWN && self.image_flags.contains(&name) {
            self.images_used.insert(name.clone());
            name.clone()
        } else {
            let shown = if reference == UNKNOWN {
                "an image known after apply".to_owned()
            } else {
                format!("image {reference:?}")
            };
            if !serving {
                self.assume(
                    at,
                    setting("image"),
                    format!(
                        "{shown} is not local, and the load balancer does not reach this container"
                    ),
                    "container left out (--image NAME=COMMAND or NAME=docker:IMAGE runs it)".into(),
                );
                return None;
            }
            self.assume(at, setting("image"), format!("{shown} runs locally as the project's server (--image NAME=COMMAND or NAME=docker:IMAGE runs your own)"), "\"server\"".into());
            if self.image_flags.contains("server") {
                self.images_used.insert("server".to_owned());
            }
            "server".to_owned()
        };
        let mut port_mappings = Vec::new();
        if let Some(pms) = c.get("portMappings").and_then(|v| v.as_array()) {
            for (i, pm) in pms.iter().enumerate() {
                let Some(cp) = num(pm.get("containerPort")) else {
                    self.assume(
                        at,
                        setting(&format!("portMappings[{i}].containerPort")),
                        "not known before apply".into(),
                        "left out".into(),
                    );
                    continue;
                };
                let hp = match pm.get("hostPort") {
                    None => None,
                    Some(v) if !known(v) => {
                        self.assume(
                            at,
                            setting(&format!("portMappings[{i}].hostPort")),
                            "not known before apply".into(),
                            "0 (dynamic)".into(),
                        );
                        None
                    }
                    Some(v) => num(Some(v)).map(|n| n as u16),
                };
                port_mappings.push(PortMapping {
                    container_port: cp as u16,
                    host_port: hp,
                    protocol: pm
                        .get("protocol")
                        .and_then(|v| v.as_str())
                        .filter(|s| *s != UNKNOWN)
                        .map(str::to_owned),
                });
            }
        }
        if port_mappings.len() > 1 {
            self.assume(
                at,
                setting("portMappings"),
                format!("{} port mappings; localaws maps one", port_mappings.len()),
                "the first".into(),
            );
            port_mappings.truncate(1);
        }
        let mut environment = Vec::new();
        if let Some(env) = c.get("environment").and_then(|v| v.as_array()) {
            for e in env {
                let Some(k) = e.get("name").and_then(|v| v.as_str()) else {
                    continue;
                };
                match e.get("value") {
                    Some(v) if known(v) => environment.push(KeyValue {
                        name: k.to_owned(),
                        value: match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    }),
                    _ => self.assume(
                        at,
                        setting(&format!("environment {k}")),
                        "not known before apply".into(),
                        "left unset (the application's default)".into(),
                    ),
                }
            }
        }
        let stop_timeout = match c.get("stopTimeout") {
            None => None,
            Some(v) => match num(Some(v)) {
                Some(n) if (2.0..=120.0).contains(&n) => Some(n as u32),
                Some(n) => {
                    let used = n.clamp(2.0, 120.0) as u32;
                    self.assume(
                        at,
                        setting("stopTimeout"),
                        format!("{} is outside the 2 to 120 s ECS accepts", fmt_num(n)),
                        used.to_string(),
                    );
                    Some(used)
                }
                None => {
                    self.assume(
                        at,
                        setting("stopTimeout"),
                        "not known before apply".into(),
                        format!("{} (the ECS default)", defaults::STOP_TIMEOUT),
                    );
                    None
                }
            },
        };
        let health_check = c.get("healthCheck").and_then(|h| {
            let command: Vec<String> = h
                .get("command")?
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            Some(ContainerHealthCheck {
                command,
                interval: num(h.get("interval")).map(|n| n as u32),
                timeout: num(h.get("timeout")).map(|n| n as u32),
                retries: num(h.get("retries")).map(|n| n as u32),
                start_period: num(h.get("startPeriod")).map(|n| n as u32),
            })
        });
        // What the container runs, where, as whom: the image's own when unset, or when the
        // value is known only after apply.
        let mut overrides = |key: &str, list: bool| -> Option<Vec<String>> {
            let v = c.get(key)?;
            let got: Option<Vec<String>> = if list {
                v.as_array().and_then(|items| {
                    items
                        .iter()
                        .map(|i| i.as_str().filter(|s| *s != UNKNOWN).map(str::to_owned))
                        .collect()
                })
            } else {
                v.as_str()
                    .filter(|s| *s != UNKNOWN)
                    .map(|s| vec![s.to_owned()])
            };
            if got.is_none() {
                self.assume(
                    at,
                    setting(key),
                    "not known before apply".into(),
                    "the image's own".into(),
                );
            }
            got
        };
        let entry_point = overrides("entryPoint", true);
        let command = overrides("command", true);
        let working_directory =
            overrides("workingDirectory", false).and_then(|v| v.into_iter().next());
        let user = overrides("user", false).and_then(|v| v.into_iter().next());
        Some(ContainerDefinition {
            name,
            image,
            essential: c.get("essential").and_then(|v| v.as_bool()),
            port_mappings,
            environment,
            stop_timeout,
            health_check,
            linux_parameters: c
                .get("linuxParameters")
                .and_then(|l| l.get("initProcessEnabled"))
                .and_then(serde_json::Value::as_bool)
                .map(|init| LinuxParameters {
                    init_process_enabled: Some(init),
                }),
            entry_point,
            command,
            working_directory,
            user,
            cpu: num(c.get("cpu")).map(|n| n as u32),
            memory: num(c.get("memory")).map(|n| n as u32),
        })
    }

    fn service(
        &mut self,
        s: &Inst<'a>,
        name: String,
        task_definition: String,
        tg_name: &dyn Fn(&Resource<'_>) -> Option<String>,
        stack: &Stack,
    ) -> Result<ServiceConfig, DeriveError> {
        let b = s.res.block;
        let controller = match b.block("deployment_controller") {
            Some(dc) => self.text(s, dc, "type", "ECS"),
            None => "ECS".to_owned(),
        };
        let load_balancer = match b.block("load_balancer") {
            None => None,
            Some(lb) => {
                let tg = self
                    .resource_of(s, lb, "target_group_arn")
                    .and_then(|r| tg_name(&r));
                let Some(tg) = tg else {
                    return Err(DeriveError::Missing(format!(
                        "{}: {}: load_balancer.target_group_arn does not refer to an aws_lb_target_group of this configuration",
                        lb.location,
                        s.address()
                    )));
                };
                let td = stack.task_definition(&task_definition);
                let first = td.and_then(|t| t.container_definitions.first());
                let container_name = self.text(
                    s,
                    lb,
                    "container_name",
                    first.map_or("app", |c| c.name.as_str()),
                );
                let default_port = first
                    .and_then(|c| c.port_mappings.first())
                    .map_or(8080, |p| p.container_port);
                let container_port =
                    self.number(s, lb, "container_port", f64::from(default_port)) as u16;
                Some(ServiceLoadBalancer {
                    target_group: tg,
                    container_name,
                    container_port,
                })
            }
        };
        Ok(ServiceConfig {
            name,
            task_definition,
            desired_count: self.number(s, b, "desired_count", 0.0) as u32,
            load_balancer,
            minimum_healthy_percent: self.number(
                s,
                b,
                "deployment_minimum_healthy_percent",
                f64::from(defaults::MINIMUM_HEALTHY_PERCENT),
            ) as u32,
            maximum_percent: self.number(
                s,
                b,
                "deployment_maximum_percent",
                f64::from(defaults::MAXIMUM_PERCENT),
            ) as u32,
            health_check_grace_period: self.number(s, b, "health_check_grace_period_seconds", 0.0)
                as u32,
            deployment_circuit_breaker: b.block("deployment_circuit_breaker").map(|cb| {
                stack::CircuitBreakerConfig {
                    enable: self.boolean(s, cb, "enable", false),
                    rollback: self.boolean(s, cb, "rollback", false),
                }
            }),
            deployment_controller: controller,
        })
    }

    /// A listener's forward: `default_action { type = "forward", target_group_arn }` or a
    /// weighted `forward { target_group { arn, weight } }`.
    fn forward(
        &mut self,
        l: &Inst<'a>,
        tg_name: &dyn Fn(&Resource<'_>) -> Option<String>,
    ) -> Vec<WeightedTargetGroup> {
        let mut out = Vec::new();
        for action in self.blocks(l, l.res.block, "default_action") {
            if self.text(l, action, "type", "") != "forward" {
                continue;
            }
            if let Some(tg) = self
                .resource_of(l, action, "target_group_arn")
                .and_then(|r| tg_name(&r))
            {
                out.push(WeightedTargetGroup {
                    target_group: tg,
                    weight: 100,
                });
            }
            if let Some(fwd) = action.block("forward") {
                for t in self.blocks(l, fwd, "target_group") {
                    if let Some(tg) = self.resource_of(l, t, "arn").and_then(|r| tg_name(&r)) {
                        let weight = self.number(l, t, "weight", 1.0) as u32;
                        out.push(WeightedTargetGroup {
                            target_group: tg,
                            weight,
                        });
                    }
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        out
    }

    /// The CodeDeploy applications and deployment groups, and the listener resources the first
    /// deployment group names for production and test traffic.
    #[allow(clippy::type_complexity)]
    #[expect(
        clippy::too_many_lines,
        reason = "maps applications, deployment groups and their nested blocks field by field"
    )]
    fn codedeploy(
        &mut self,
        tg_name: &dyn Fn(&Resource<'_>) -> Option<String>,
        stack: &Stack,
    ) -> Result<(Option<CodeDeployConfig>, Option<String>, Option<String>), DeriveError> {
        let apps = self.instances("aws_codedeploy_app");
        let groups = self.instances("aws_codedeploy_deployment_group");
        if apps.is_empty() && groups.is_empty() {
            return Ok((None, None, None));
        }
        let mut cd = CodeDeployConfig::default();
        let mut app_names = Vec::new();
        for a in &apps {
            let name = self.name(a, "name");
            self.source(format!("codedeploy application {name}"), a);
            app_names.push(name.clone());
            cd.applications.push(ApplicationConfig {
                name,
                deployment_groups: Vec::new(),
            });
        }
        for c in self.instances("aws_codedeploy_deployment_config") {
            let name = self.name(&c, "deployment_config_name");
            let Some(tr) = c.res.block.block("traffic_routing_config") else {
                continue;
            };
            let kind = self.text(&c, tr, "type", "AllAtOnce");
            let (percentage, interval) = match kind.as_str() {
                "TimeBasedCanary" => tr.block("time_based_canary").map_or((0.0, 0.0), |b| {
                    (
                        self.number(&c, b, "percentage", 0.0),
                        self.number(&c, b, "interval", 0.0),
                    )
                }),
                "TimeBasedLinear" => tr.block("time_based_linear").map_or((0.0, 0.0), |b| {
                    (
                        self.number(&c, b, "percentage", 0.0),
                        self.number(&c, b, "interval", 0.0),
                    )
                }),
                _ => (0.0, 0.0),
            };
            cd.deployment_configs.push(DeploymentConfigConfig {
                name,
                kind,
                percentage: percentage as u32,
                interval: interval as u32,
            });
        }
        let mut prod = None;
        let mut test = None;
        for g in &groups {
            let b = g.res.block;
            let app = match self.string(g, b, "app_name") {
                Some(Ok(n)) => n,
                Some(Err((why, at))) => {
                    let used = app_names.first().cloned().unwrap_or_default();
                    self.assume(
                        &at,
                        format!("{} app_name", g.address()),
                        why,
                        format!("{used:?}"),
                    );
                    used
                }
                None => continue,
            };
            let name = self.name(g, "deployment_group_name");
            let Some(ecs) = b.block("ecs_service") else {
                continue;
            };
            let service = match self.string(g, ecs, "service_name") {
                Some(Ok(n)) => n,
                _ => {
                    let used = stack
                        .services
                        .first()
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    self.assume(
                        &ecs.location,
                        format!("{} ecs_service.service_name", g.address()),
                        "not known before apply".into(),
                        format!("{used:?}"),
                    );
                    used
                }
            };
            let pair = b
                .block("load_balancer_info")
                .and_then(|l| l.block("target_group_pair_info"));
            let mut target_groups = Vec::new();
            let route = |d: &mut Self, kind: &str| -> Option<String> {
                let r = pair?.block(kind)?;
                let a = r.attribute("listener_arns")?;
                match d.resolve(
                    g.res.module,
                    &a.expr,
                    vec![Access::Key(Value::from(0u64))],
                    Some(g),
                    0,
                ) {
                    Sym::Res(r, _) if r.kind() == "aws_lb_listener" => Some(r.address()),
                    _ => {
                        d.assume(
                            &a.location,
                            format!("{} {kind}.listener_arns", g.address()),
                            why_unknown(&a.expr),
                            "the listener forwarding to the service's target group".into(),
                        );
                        None
                    }
                }
            };
            let p = route(self, "prod_traffic_route");
            let t = route(self, "test_traffic_route");
            if let Some(pair) = pair {
                for tgb in pair.blocks("target_group") {
                    match self.sym(g, tgb, "name") {
                        Some((Sym::Res(r, _), _)) => target_groups.extend(tg_name(&r)),
                        Some((sym, at)) => match self.sym_string(sym) {
                            Ok(n) => target_groups.push(n),
                            Err(why) => self.assume(
                                &at,
                                format!("{} target_group.name", g.address()),
                                why,
                                "left out".into(),
                            ),
                        },
                        None => {}
                    }
                }
            }
            let bg = b.block("blue_green_deployment_config");
            let ready = bg.and_then(|x| x.block("deployment_ready_option"));
            let deployment_ready = match ready {
                Some(r) => DeploymentReady {
                    action_on_timeout: self.text(g, r, "action_on_timeout", "CONTINUE_DEPLOYMENT"),
                    wait_time_in_minutes: self.number(g, r, "wait_time_in_minutes", 0.0) as u32,
                },
                None => DeploymentReady::default(),
            };
            let termination_wait_minutes = bg
                .and_then(|x| x.block("terminate_blue_instances_on_deployment_success"))
                .map_or(0.0, |t| {
                    self.number(
                        g,
                        t,
                        "termination_wait_time_in_minutes",
                        f64::from(defaults::TERMINATION_WAIT_MINUTES),
                    )
                });
            let auto_rollback = match b.block("auto_rollback_configuration") {
                Some(ar) => AutoRollback {
                    enabled: self.boolean(g, ar, "enabled", false),
                    events: match self.sym(g, ar, "events") {
                        Some((Sym::Val(Value::Array(v)), _)) => v
                            .iter()
                            .filter_map(|e| e.as_str().map(str::to_owned))
                            .collect(),
                        _ => Vec::new(),
                    },
                },
                None => AutoRollback::default(),
            };
            let alarms = match b.block("alarm_configuration") {
                Some(ac) if self.boolean(g, ac, "enabled", false) => self.alarm_names(g, ac),
                _ => Vec::new(),
            };
            let group = DeploymentGroupConfig {
                name: name.clone(),
                service,
                production_listener: "production".into(),
                test_listener: t.as_ref().map(|_| "test".to_owned()),
                target_groups,
                deployment_config: self.text(
                    g,
                    b,
                    "deployment_config_name",
                    "CodeDeployDefault.OneAtATime",
                ),
                deployment_ready,
                termination_wait_minutes: termination_wait_minutes as u32,
                auto_rollback,
                alarms,
            };
            if prod.is_none() {
                prod = p;
                test = t;
            }
            self.source(format!("deployment group {name}"), g);
            match cd.applications.iter_mut().find(|a| a.name == app) {
                Some(a) => a.deployment_groups.push(group),
                None => cd.applications.push(ApplicationConfig {
                    name: app,
                    deployment_groups: vec![group],
                }),
            }
        }
        Ok((Some(cd), prod, test))
    }

    /// `alarm_configuration.alarms`: known names, or the names of the alarm resources a `for`
    /// expression walks (`[for a in aws_cloudwatch_metric_alarm.x : a.alarm_name]`).
    fn alarm_names(&mut self, g: &Inst<'a>, ac: &'a Block) -> Vec<String> {
        let Some(a) = ac.attribute("alarms") else {
            return Vec::new();
        };
        if let Some(Value::Array(v)) = g.res.module.eval_with(&a.expr, &g.extra())
            && !v.iter().any(|x| x.as_str() == Some(UNKNOWN))
        {
            return v
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
        }
        let mut walked = Vec::new();
        collect_for_collections(&a.expr, &mut walked);
        let mut names = Vec::new();
        for coll in walked {
            match self.resolve(g.res.module, coll, Vec::new(), Some(g), 0) {
                Sym::Res(r, _) if r.kind() == "aws_cloudwatch_metric_alarm" => {
                    for i in self.expand(r) {
                        names.push(self.name(&i, "alarm_name"));
                    }
                }
                _ => self.assume(
                    &a.location,
                    format!("{} alarm_configuration.alarms", g.address()),
                    why_unknown(&a.expr),
                    "no alarms".into(),
                ),
            }
        }
        names
    }

    fn alarm(
        &mut self,
        a: &Inst<'a>,
        tg_name: &dyn Fn(&Resource<'_>) -> Option<String>,
    ) -> Option<AlarmConfig> {
        let b = a.res.block;
        let metric = self.text(a, b, "metric_name", "");
        if !stack::ALARM_METRICS.contains(&metric.as_str()) {
            return None;
        }
        let tg = match b.attribute("dimensions") {
            Some(d) => match self.resolve(
                a.res.module,
                &d.expr,
                vec![Access::Attr("TargetGroup".into())],
                Some(a),
                0,
            ) {
                Sym::Res(r, _) => tg_name(&r),
                _ => None,
            },
            None => None,
        };
        let name = self.name(a, "alarm_name");
        let Some(tg) = tg else {
            self.assume(
                &b.location,
                format!("{} dimensions.TargetGroup", a.address()),
                "not a target group of this configuration".into(),
                "alarm left out".into(),
            );
            return None;
        };
        self.source(format!("alarm {name}"), a);
        Some(AlarmConfig {
            name,
            metric,
            target_group: tg,
            threshold: self.number(a, b, "threshold", 0.0),
            period: self.number(a, b, "period", f64::from(defaults::ALARM_PERIOD)) as u32,
            evaluation_periods: self.number(a, b, "evaluation_periods", 1.0) as u32,
        })
    }

    #[expect(
        clippy::too_many_lines,
        reason = "maps the Auto Scaling group, its launch template, capacity provider and refresh preferences field by field"
    )]
    fn compute(&mut self, stack: &mut Stack) -> Result<(), DeriveError> {
        let asgs = self.instances("aws_autoscaling_group");
        let Some(g) = asgs.first().cloned() else {
            // No Auto Scaling group: a fixed cluster, as many instances as tasks.
            stack.cluster.instances = stack
                .services
                .iter()
                .map(|s| s.desired_count)
                .max()
                .unwrap_or(2)
                .max(1);
            return Ok(());
        };
        let b = g.res.block;
        let name = self.name(&g, "name");
        self.source(format!("auto scaling group {name}"), &g);
        // Launch template.
        let lt_block = b.block("launch_template");
        let lt_res = lt_block.and_then(|lb| {
            self.resource_of(&g, lb, "id")
                .or_else(|| self.resource_of(&g, lb, "name"))
        });
        let lts = self.instances("aws_launch_template");
        let lt = lt_res
            .and_then(|r| lts.iter().find(|i| i.same(&r)).cloned())
            .or_else(|| lts.first().cloned());
        let Some(lt) = lt else {
            return Err(DeriveError::Missing(format!(
                "{}: {}: no aws_launch_template of this configuration",
                b.location,
                g.address()
            )));
        };
        let lt_name = self.name(&lt, "name");
        self.source(format!("launch template {lt_name}"), &lt);
        let image_id = match self.string(&lt, lt.res.block, "image_id") {
            Some(Ok(id)) if id.starts_with("ami-") => id,
            Some(Ok(id)) => {
                let at = lt.res.get("image_id").1;
                self.assume(
                    &at,
                    format!("{} image_id", lt.address()),
                    format!("{id:?} is not an AMI id"),
                    ASSUMED_AMI.into(),
                );
                ASSUMED_AMI.into()
            }
            Some(Err((why, at))) => {
                self.assume(
                    &at,
                    format!("{} image_id", lt.address()),
                    why,
                    ASSUMED_AMI.into(),
                );
                ASSUMED_AMI.into()
            }
            None => {
                self.assume(
                    &lt.res.block.location,
                    format!("{} image_id", lt.address()),
                    "not written".into(),
                    ASSUMED_AMI.into(),
                );
                ASSUMED_AMI.into()
            }
        };
        if !stack.amis.contains_key(&image_id) {
            stack.amis.insert(image_id.clone(), AmiConfig::default());
        }
        let instance_type = self.text(&lt, lt.res.block, "instance_type", "t3.small");
        stack.launch_templates.push(LaunchTemplateConfig {
            name: lt_name.clone(),
            versions: vec![LaunchTemplateData {
                image_id,
                instance_type,
            }],
            default_version: 1,
        });
        let version = match lt_block.and_then(|lb| self.sym(&g, lb, "version")) {
            None => "$Default".to_owned(),
            Some((Sym::Val(v), _)) => scalar(&v).unwrap_or_else(|| "$Default".into()),
            Some((Sym::Res(r, attrs), at)) => {
                let attr = match attrs.first() {
                    Some(Access::Attr(a)) => a.clone(),
                    _ => String::new(),
                };
                self.assume(
                    &at,
                    format!("{} launch_template.version", g.address()),
                    format!(
                        "{}.{attr} is known after apply; a first apply creates version 1",
                        r.address()
                    ),
                    "\"1\"".into(),
                );
                "1".to_owned()
            }
            Some((Sym::Unknown(why), at)) => {
                self.assume(
                    &at,
                    format!("{} launch_template.version", g.address()),
                    why,
                    "\"1\"".into(),
                );
                "1".to_owned()
            }
        };
        let min_size = self.number(&g, b, "min_size", 0.0) as u32;
        let max_size = self.number(&g, b, "max_size", f64::from(min_size)) as u32;
        let desired = self.number(&g, b, "desired_capacity", f64::from(min_size)) as u32;

        // Capacity provider over this group.
        let mut capacity_provider = None;
        for cp in self.instances("aws_ecs_capacity_provider") {
            let Some(p) = cp.res.block.block("auto_scaling_group_provider") else {
                continue;
            };
            let over = self.resource_of(&cp, p, "auto_scaling_group_arn");
            if over.is_some_and(|r| r.address() != g.res.address()) {
                continue;
            }
            let cp_name = self.name(&cp, "name");
            self.source(format!("capacity provider {cp_name}"), &cp);
            capacity_provider = Some(CapacityProviderConfig {
                name: cp_name,
                managed_draining: self.text(&cp, p, "managed_draining", "ENABLED") == "ENABLED",
                managed_termination_protection: self.text(
                    &cp,
                    p,
                    "managed_termination_protection",
                    "DISABLED",
                ) == "ENABLED",
            });
            break;
        }
        let capacity_provider = match capacity_provider {
            Some(c) => c,
            None => {
                self.assume(&b.location, format!("{} capacity provider", g.address()), "no aws_ecs_capacity_provider over this group: nothing drains an instance before Auto Scaling terminates it".into(), "no managed draining".into());
                CapacityProviderConfig {
                    name: format!("{name}-no-capacity-provider"),
                    managed_draining: false,
                    managed_termination_protection: false,
                }
            }
        };

        // Lifecycle hooks: inline and separate resources.
        let mut lifecycle_hooks = Vec::new();
        for h in b.blocks("initial_lifecycle_hook") {
            lifecycle_hooks.push(self.hook(&g, h));
        }
        for h in self.instances("aws_autoscaling_lifecycle_hook") {
            lifecycle_hooks.push(self.hook(&h, h.res.block));
        }

        // Instance refresh preferences.
        let mut prefs = RefreshPrefs::default();
        if let Some(p) = b
            .block("instance_refresh")
            .and_then(|r| r.block("preferences"))
        {
            prefs.min_healthy = self.number(
                &g,
                p,
                "min_healthy_percentage",
                f64::from(defaults::REFRESH_MIN_HEALTHY_PERCENTAGE),
            ) as i32;
            prefs.max_healthy = self.number(
                &g,
                p,
                "max_healthy_percentage",
                f64::from(defaults::REFRESH_MAX_HEALTHY_PERCENTAGE),
            ) as i32;
            prefs.instance_warmup = Self::attr(p, "instance_warmup")
                .map(|_| self.number(&g, p, "instance_warmup", 0.0) as i32);
            prefs.checkpoint_delay = Self::attr(p, "checkpoint_delay").map(|_| {
                self.number(
                    &g,
                    p,
                    "checkpoint_delay",
                    f64::from(defaults::CHECKPOINT_DELAY),
                ) as i32
            });
            prefs.checkpoints = match self.sym(&g, p, "checkpoint_percentages") {
                Some((Sym::Val(Value::Array(v)), _)) => v
                    .iter()
                    .filter_map(crate::terraform::number)
                    .map(|n| n as i32)
                    .collect(),
                _ => Vec::new(),
            };
            prefs.auto_rollback = self.boolean(&g, p, "auto_rollback", false);
            prefs.skip_matching = self.boolean(&g, p, "skip_matching", false);
            prefs.scale_in_protected = self.text(&g, p, "scale_in_protected_instances", "Ignore");
        }
        self.refresh = prefs;

        // Target groups attached to the group are not derived: in localaws what answers on an
        // attached group's port of an instance is the ECS agent's introspection endpoint, which
        // is right for a group checking the agent and wrong for one on a task's static host
        // port. An attached list that is not known to be empty is an assumption.
        if let Some((sym, at)) = self.sym(&g, b, "target_group_arns")
            && !matches!(&sym, Sym::Val(Value::Array(v)) if v.is_empty())
        {
            self.assume(
                &at,
                format!("{} target_group_arns", g.address()),
                "target groups attached to the Auto Scaling group are not derived (ELB health of the instances is not rehearsed)".into(),
                "none attached".into(),
            );
        }

        stack.auto_scaling_group = Some(AutoScalingGroupConfig {
            name,
            min_size,
            max_size,
            desired_capacity: desired,
            launch_template: LaunchTemplateSpec {
                name: lt_name,
                version,
            },
            health_check_type: self.text(
                &g,
                b,
                "health_check_type",
                defaults::ASG_HEALTH_CHECK_TYPE,
            ),
            health_check_grace_period: self.number(
                &g,
                b,
                "health_check_grace_period",
                f64::from(defaults::PROVIDER_ASG_HEALTH_CHECK_GRACE_PERIOD),
            ) as u32,
            default_instance_warmup: Self::attr(b, "default_instance_warmup")
                .map(|_| self.number(&g, b, "default_instance_warmup", 0.0) as u32),
            target_groups: Vec::new(),
            capacity_provider,
            lifecycle_hooks,
        });
        Ok(())
    }

    fn hook(&mut self, i: &Inst<'a>, b: &'a Block) -> LifecycleHookConfig {
        LifecycleHookConfig {
            name: self.text(i, b, "name", i.res.name()),
            transition: self.text(
                i,
                b,
                "lifecycle_transition",
                "autoscaling:EC2_INSTANCE_TERMINATING",
            ),
            heartbeat_timeout: self.number(i, b, "heartbeat_timeout", 3600.0) as u32,
            default_result: self.text(i, b, "default_result", "ABANDON"),
        }
    }
}

/// The `for` expressions' collections inside an expression.
fn collect_for_collections<'e>(expr: &'e Expression, out: &mut Vec<&'e Expression>) {
    match expr {
        Expression::ForExpr(f) => out.push(&f.collection_expr),
        Expression::FuncCall(c) => c.args.iter().for_each(|a| collect_for_collections(a, out)),
        Expression::Array(v) => v.iter().for_each(|a| collect_for_collections(a, out)),
        Expression::Parenthesis(e) => collect_for_collections(e, out),
        _ => {}
    }
}

/// Steps into a known value.
fn apply(mut v: Value, path: &[Access]) -> Option<Value> {
    for a in path {
        v = match (a, v) {
            (Access::Attr(k), Value::Object(mut m))
            | (Access::Key(Value::String(k)), Value::Object(mut m)) => m.swap_remove(k)?,
            (Access::Key(i), Value::Array(items)) => {
                let i = crate::terraform::number(i)? as usize;
                items.into_iter().nth(i)?
            }
            _ => return None,
        };
    }
    Some(v)
}

fn contains_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s == UNKNOWN,
        Value::Array(a) => a.iter().any(contains_unknown),
        Value::Object(m) => m.values().any(contains_unknown),
        _ => false,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s != UNKNOWN => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

fn data_reason(path: &[Access]) -> String {
    let parts: Vec<String> = path
        .iter()
        .take(2)
        .filter_map(|a| match a {
            Access::Attr(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let name = format!("data.{}", parts.join("."));
    if parts.first().map(String::as_str) == Some("terraform_remote_state") {
        format!("remote state {name} (read at plan time from another configuration's state)")
    } else {
        format!("data source {name} (read at plan time from AWS)")
    }
}

/// Why an expression is not known statically: the first data source, resource, unknown variable
/// or function it uses.
pub fn why_unknown(expr: &Expression) -> String {
    // A data source or remote state explains more than the variable beside it
    // (`coalesce(var.ami_id, data.aws_ssm_parameter.ecs_ami.value)`).
    fn first_data(e: &Expression) -> Option<String> {
        match e {
            Expression::Traversal(t) => match &t.expr {
                Expression::Variable(v) if v.as_str() == "data" => {
                    let attrs: Vec<Access> = t
                        .operators
                        .iter()
                        .filter_map(|o| match o {
                            TraversalOperator::GetAttr(id) => Some(Access::Attr(id.to_string())),
                            _ => None,
                        })
                        .collect();
                    Some(data_reason(&attrs))
                }
                other => first_data(other),
            },
            Expression::FuncCall(c) => c.args.iter().find_map(first_data),
            Expression::Array(v) => v.iter().find_map(first_data),
            Expression::Object(o) => o.values().find_map(first_data),
            Expression::Parenthesis(e) => first_data(e),
            Expression::Conditional(c) => first_data(&c.cond_expr)
                .or_else(|| first_data(&c.true_expr))
                .or_else(|| first_data(&c.false_expr)),
            Expression::TemplateExpr(t) => {
                let text = t.to_string();
                text.find("data.").map(|i| {
                    let name: String = text[i..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                        .collect();
                    format!("data source {name} (read at plan time)")
                })
            }
            _ => None,
        }
    }
    if let Some(why) = first_data(expr) {
        return why;
    }
    fn walk(e: &Expression) -> Option<String> {
        match e {
            Expression::Traversal(t) => {
                let attrs: Vec<String> = t
                    .operators
                    .iter()
                    .filter_map(|o| match o {
                        TraversalOperator::GetAttr(id) => Some(id.to_string()),
                        _ => None,
                    })
                    .collect();
                match &t.expr {
                    Expression::Variable(v) => {
                        let root = v.as_str();
                        match root {
                            "data" => Some(data_reason(
                                &attrs.iter().cloned().map(Access::Attr).collect::<Vec<_>>(),
                            )),
                            "var" | "local" | "module" | "each" | "count" => Some(format!(
                                "{root}.{} is not known before apply",
                                attrs.join(".")
                            )),
                            kind => {
                                Some(format!("{kind}.{} is known after apply", attrs.join(".")))
                            }
                        }
                    }
                    other => walk(other),
                }
            }
            Expression::FuncCall(c) => c.args.iter().find_map(walk).or_else(|| {
                Some(format!(
                    "function {}() is not evaluated statically",
                    c.name.name
                ))
            }),
            Expression::Array(v) => v.iter().find_map(walk),
            Expression::Object(o) => o.values().find_map(walk),
            Expression::Parenthesis(e) => walk(e),
            Expression::Conditional(c) => walk(&c.cond_expr)
                .or_else(|| walk(&c.true_expr))
                .or_else(|| walk(&c.false_expr)),
            Expression::Operation(_) | Expression::TemplateExpr(_) | Expression::ForExpr(_) => None,
            _ => None,
        }
    }
    walk(expr).unwrap_or_else(|| "not known before apply".to_owned())
}
