//! A static reader of Terraform configurations: no Terraform binary, no provider, no state.
//!
//! [`Config::load`] parses every `.tf` file of a directory with `hcl-rs` (its `hcl-edit` parser,
//! which keeps byte spans, so every block and attribute carries the file and line it starts on),
//! follows `module` blocks whose `source` is a local path (`./` or `../`), and evaluates what can
//! be known before `terraform plan`:
//!
//! - variables: `default`, then `terraform.tfvars` and `*.auto.tfvars` (root module, in the order
//!   Terraform loads them), or the inputs of the calling `module` block (child modules);
//! - `locals`, in as many passes as their references need;
//! - `module.<name>.<output>` from the child's `output` blocks;
//! - literals, templates, conditionals, operators, `for` expressions and a few functions
//!   (`jsonencode`, `jsondecode`, `tostring`, `tonumber`, `max`, `min`, `coalesce`, `concat`,
//!   `merge`, `lookup`, `length`, `toset`, `tolist`, `keys`, `contains`, `lower`, `upper`);
//! - `file` and `templatefile` (the template sees only the variables it is given, as in
//!   Terraform), with `path.module`, `path.root` and `path.cwd` (the root module's directory,
//!   where `terraform` runs) as absolute paths; a relative path is relative to the root module.
//!   Files over [`MAX_FILE`] or outside readable regular files are unknown.
//!
//! Anything else (resource attributes, data sources, other functions) is *unknown*, like
//! "(known after apply)" in a plan. Inside objects and arrays an unknown part does not spoil the
//! rest: it is replaced by the string [`UNKNOWN`], so `jsonencode([{ image = aws_x.y.url,
//! stopTimeout = 30 }])` still yields a known `stopTimeout`. Not modelled: `count`/`for_each`
//! expansion (a resource is read once, as written), `dynamic` blocks (skipped), variable type
//! conversions and `optional()` defaults, remote module sources (listed in
//! [`Module::skipped_modules`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hcl::Value;
use hcl::edit::Span;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, ObjectKey};

/// What an unknown part of a partly known value is replaced with.
pub const UNKNOWN: &str = "(known after apply)";

/// The largest file `file()`/`templatefile()` read (a guard: container definitions are small).
pub const MAX_FILE: u64 = 1 << 20;

thread_local! {
    /// The root module's directory while an expression is evaluated: `file()` and
    /// `templatefile()` are plain functions (hcl-rs's `FuncDef` takes a `fn`), and Terraform
    /// resolves their relative paths against the directory it runs in.
    static ROOT: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `root` as the directory relative paths of `file()` resolve against.
fn with_root<T>(root: &Path, f: impl FnOnce() -> T) -> T {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let previous = ROOT.with(|r| r.replace(Some(root)));
    let out = f();
    ROOT.with(|r| *r.borrow_mut() = previous);
    out
}

/// Deepest module nesting followed (a guard against `source` cycles).
const MAX_DEPTH: usize = 16;

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid HCL.
    #[error("cannot parse {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A directory holds no `.tf` file.
    #[error("no .tf files in {}", dir.display())]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// A local module source does not exist.
    #[error("module {name:?} at {location}: source {source_path:?} is not a directory")]
    ModuleSource {
        /// The module block's label.
        name: String,
        /// Where the module block is.
        location: Location,
        /// The `source` as written.
        source_path: String,
    },
    /// Modules nest deeper than [`MAX_DEPTH`] (a cycle of sources).
    #[error("modules nest deeper than {MAX_DEPTH} levels at {}: is there a cycle of sources?", dir.display())]
    TooDeep {
        /// The directory reached.
        dir: PathBuf,
    },
}

/// A file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// The line, counted from 1.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// An attribute: `name = expression`.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// The key.
    pub name: String,
    /// The expression as written.
    pub expr: Expression,
    /// Where it starts.
    pub location: Location,
}

/// A block: `kind "label" ... { attributes and blocks }`.
#[derive(Debug, Clone)]
pub struct Block {
    /// The block type (`resource`, `module`, `health_check`, ...).
    pub kind: String,
    /// The labels (`aws_lb`, `this`).
    pub labels: Vec<String>,
    /// Its attributes, in order.
    pub attributes: Vec<Attribute>,
    /// Its nested blocks, in order (`dynamic` blocks included as written).
    pub blocks: Vec<Block>,
    /// Where its header is.
    pub location: Location,
}

impl Block {
    /// The attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The first nested block of type `kind`.
    pub fn block(&self, kind: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.kind == kind)
    }

    /// Every nested block of type `kind`.
    pub fn blocks<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks.iter().filter(move |b| b.kind == kind)
    }

    /// The nested block or attribute at a dotted path (`preferences.min_healthy_percentage`):
    /// every part but the last names a block (the first of its type).
    pub fn find(&self, path: &str) -> Found<'_> {
        let mut block = self;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                return match block.attribute(part) {
                    Some(a) => Found::Attribute(a),
                    None => Found::Absent(block),
                };
            }
            match block.block(part) {
                Some(b) => block = b,
                None => return Found::Absent(block),
            }
        }
        Found::Absent(block)
    }
}

/// The result of [`Block::find`].
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// The attribute exists.
    Attribute(&'a Attribute),
    /// It does not; the deepest block on the path that exists.
    Absent(&'a Block),
}

/// A module: one directory of `.tf` files, evaluated as far as statically possible.
#[derive(Debug, Clone)]
pub struct Module {
    /// `""` for the root, `module.compute`, `module.a.module.b` for children.
    pub address: String,
    /// The directory.
    pub dir: PathBuf,
    /// The root module's directory (`path.root`).
    pub root: PathBuf,
    /// Every top-level block of every `.tf` file, files in name order.
    pub blocks: Vec<Block>,
    /// Known variable values (`var.*`).
    pub variables: BTreeMap<String, Value>,
    /// Known local values (`local.*`).
    pub locals: BTreeMap<String, Value>,
    /// Known outputs (what a parent sees as `module.<name>.*`).
    pub outputs: BTreeMap<String, Value>,
    /// Known outputs of the child modules, by module name (`module.*`).
    pub module_outputs: BTreeMap<String, Value>,
    /// Child modules with local sources, in order.
    pub children: Vec<Module>,
    /// Module blocks not followed (remote sources), with their `source`.
    pub skipped_modules: Vec<(Location, String)>,
}

/// An evaluated setting: absent (the provider or AWS default applies), unknown until apply, or
/// known.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    /// Not written: the default applies.
    Absent,
    /// Written, but not known before apply.
    Unknown,
    /// Written and known.
    Known(Value),
}

impl Setting {
    /// The value as a number, if known and numeric (numeric strings count, as in Terraform).
    pub fn number(&self) -> Option<f64> {
        match self {
            Setting::Known(v) => number(v),
            _ => None,
        }
    }

    /// The value as a string, if known and a string (or a number or bool, converted).
    pub fn string(&self) -> Option<String> {
        match self {
            Setting::Known(Value::String(s)) if s != UNKNOWN => Some(s.clone()),
            Setting::Known(Value::Number(n)) => Some(n.to_string()),
            Setting::Known(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The value as a bool, if known (`"true"`/`"false"` strings count).
    pub fn bool(&self) -> Option<bool> {
        match self {
            Setting::Known(Value::Bool(b)) => Some(*b),
            Setting::Known(Value::String(s)) if s == "true" => Some(true),
            Setting::Known(Value::String(s)) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// Whether it is written, known or not.
    pub fn is_set(&self) -> bool {
        !matches!(self, Setting::Absent)
    }
}

/// A number from a value: numbers, and strings that parse as one.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A whole configuration: the root module and, through it, every local child module.
#[derive(Debug, Clone)]
pub struct Config {
    /// The root module.
    pub root: Module,
}

/// A resource found anywhere in the module tree.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    /// The module that declares it.
    pub module: &'a Module,
    /// The `resource` block.
    pub block: &'a Block,
}

impl<'a> Resource<'a> {
    /// The resource type (`aws_lb`).
    pub fn kind(&self) -> &'a str {
        self.block.labels.first().map_or("", String::as_str)
    }

    /// The resource name (`this`).
    pub fn name(&self) -> &'a str {
        self.block.labels.get(1).map_or("", String::as_str)
    }

    /// The address, as Terraform prints it: `module.compute.aws_autoscaling_group.this`.
    pub fn address(&self) -> String {
        if self.module.address.is_empty() {
            format!("{}.{}", self.kind(), self.name())
        } else {
            format!("{}.{}.{}", self.module.address, self.kind(), self.name())
        }
    }

    /// The setting at a dotted path (see [`Block::find`]) and where to point at it: the
    /// attribute, or the deepest enclosing block when it is absent.
    pub fn get(&self, path: &str) -> (Setting, Location) {
        match self.block.find(path) {
            Found::Attribute(a) => (self.module.eval_setting(&a.expr), a.location.clone()),
            Found::Absent(b) => (Setting::Absent, b.location.clone()),
        }
    }

    /// Where the block at a dotted path is, or the deepest enclosing block.
    pub fn location_of(&self, path: &str) -> Location {
        let mut block = self.block;
        for part in path.split('.') {
            match block.block(part) {
                Some(b) => block = b,
                None => break,
            }
        }
        block.location.clone()
    }
}

impl Config {
    /// Reads the configuration rooted at `dir`.
    pub fn load(dir: &Path) -> Result<Config, TerraformError> {
        let root = Module::load(dir, dir, String::new(), None, 0)?;
        Ok(Config { root })
    }

    /// Every resource of every module, depth first, in file order.
    pub fn resources(&self) -> Vec<Resource<'_>> {
        fn walk<'a>(m: &'a Module, out: &mut Vec<Resource<'a>>) {
            for b in m.blocks.iter().filter(|b| b.kind == "resource") {
                out.push(Resource {
                    module: m,
                    block: b,
                });
            }
            for c in &m.children {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Every resource of one type.
    pub fn resources_of<'a>(&'a self, kind: &str) -> Vec<Resource<'a>> {
        self.resources()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }

    /// Every module, root first.
    pub fn modules(&self) -> Vec<&Module> {
        fn walk<'a>(m: &'a Module, out: &mut Vec<&'a Module>) {
            out.push(m);
            for c in &m.children {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

impl Module {
    #[expect(
        clippy::too_many_lines,
        reason = "reads a module in Terraform's order: files, variables, tfvars, locals in passes, child modules, outputs"
    )]
    fn load(
        dir: &Path,
        root: &Path,
        address: String,
        inputs: Option<&BTreeMap<String, Setting>>,
        depth: usize,
    ) -> Result<Module, TerraformError> {
        if depth > MAX_DEPTH {
            return Err(TerraformError::TooDeep {
                dir: dir.to_path_buf(),
            });
        }
        let blocks = parse_dir(dir)?;
        let mut module = Module {
            address,
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            blocks,
            variables: BTreeMap::new(),
            locals: BTreeMap::new(),
            outputs: BTreeMap::new(),
            module_outputs: BTreeMap::new(),
            children: Vec::new(),
            skipped_modules: Vec::new(),
        };

        // Variables: defaults, overridden by tfvars (root) or inputs (children).
        let overrides = match inputs {
            Some(inputs) => inputs.clone(),
            None => with_root(root, || tfvars(dir))?,
        };
        let declared: Vec<(String, Option<Expression>)> = module
            .blocks
            .iter()
            .filter(|b| b.kind == "variable")
            .filter_map(|b| {
                let name = b.labels.first()?.clone();
                Some((name, b.attribute("default").map(|a| a.expr.clone())))
            })
            .collect();
        for (name, default) in declared {
            let value = match overrides.get(&name) {
                Some(Setting::Known(v)) => Some(v.clone()),
                Some(Setting::Unknown) => None,
                Some(Setting::Absent) | None => default.and_then(|e| module.eval(&e)),
            };
            if let Some(v) = value {
                module.variables.insert(name, v);
            }
        }

        // Locals and module outputs can refer to each other: a few passes until nothing changes.
        let calls: Vec<Block> = module
            .blocks
            .iter()
            .filter(|b| b.kind == "module")
            .cloned()
            .collect();
        let mut last = usize::MAX;
        for _ in 0..8 {
            module.eval_locals();
            let mut children = Vec::new();
            let mut skipped = Vec::new();
            for call in &calls {
                let name = call.labels.first().cloned().unwrap_or_default();
                let source = call
                    .attribute("source")
                    .and_then(|a| module.eval(&a.expr))
                    .and_then(|v| match v {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .unwrap_or_default();
                if !(source.starts_with("./") || source.starts_with("../")) {
                    skipped.push((call.location.clone(), source));
                    continue;
                }
                let child_dir = normalize(&dir.join(&source));
                if !child_dir.is_dir() {
                    return Err(TerraformError::ModuleSource {
                        name,
                        location: call.location.clone(),
                        source_path: source,
                    });
                }
                let inputs: BTreeMap<String, Setting> = call
                    .attributes
                    .iter()
                    .filter(|a| !META_ARGUMENTS.contains(&a.name.as_str()))
                    .map(|a| (a.name.clone(), module.eval_setting(&a.expr)))
                    .collect();
                let address = if module.address.is_empty() {
                    format!("module.{name}")
                } else {
                    format!("{}.module.{name}", module.address)
                };
                let child = Module::load(&child_dir, root, address, Some(&inputs), depth + 1)?;
                children.push((name, child));
            }
            module.skipped_modules = skipped;
            module.children = Vec::new();
            let mut outputs_known = 0;
            for (name, child) in children {
                outputs_known += child.outputs.len() + child.known_count();
                let outputs: hcl::Map<String, Value> = child
                    .outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                module.module_outputs.insert(name, Value::Object(outputs));
                module.children.push(child);
            }
            let known = module.locals.len() + outputs_known;
            if known == last {
                break;
            }
            last = known;
        }

        // Outputs, as the parent sees them.
        let outputs: Vec<(String, Expression)> = module
            .blocks
            .iter()
            .filter(|b| b.kind == "output")
            .filter_map(|b| {
                Some((
                    b.labels.first()?.clone(),
                    b.attribute("value")?.expr.clone(),
                ))
            })
            .collect();
        for (name, expr) in outputs {
            if let Some(v) = module.eval(&expr) {
                module.outputs.insert(name, v);
            }
        }
        Ok(module)
    }

    fn known_count(&self) -> usize {
        self.locals.len()
            + self.outputs.len()
            + self.children.iter().map(Module::known_count).sum::<usize>()
    }

    fn eval_locals(&mut self) {
        let exprs: Vec<(String, Expression)> = self
            .blocks
            .iter()
            .filter(|b| b.kind == "locals")
            .flat_map(|b| b.attributes.iter())
            .map(|a| (a.name.clone(), a.expr.clone()))
            .collect();
        for _ in 0..=exprs.len() {
            let mut changed = false;
            for (name, expr) in &exprs {
                if let Some(v) = self.eval(expr)
                    && self.locals.get(name) != Some(&v)
                {
                    self.locals.insert(name.clone(), v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Evaluates an expression in this module: `None` when it is not known statically; parts of
    /// objects and arrays that are not known become [`UNKNOWN`].
    pub fn eval(&self, expr: &Expression) -> Option<Value> {
        let ctx = self.context();
        with_root(&self.root, || partial(expr, &ctx))
    }

    /// [`Module::eval`] with more variables in scope (`each`, `count` of an expanded resource).
    pub fn eval_with(&self, expr: &Expression, extra: &[(&str, Value)]) -> Option<Value> {
        let mut ctx = self.context();
        for (name, value) in extra {
            ctx.declare_var(*name, value.clone());
        }
        with_root(&self.root, || partial(expr, &ctx))
    }

    /// [`Module::eval`] as a [`Setting`] (never [`Setting::Absent`]).
    pub fn eval_setting(&self, expr: &Expression) -> Setting {
        match self.eval(expr) {
            Some(Value::String(s)) if s == UNKNOWN => Setting::Unknown,
            Some(v) => Setting::Known(v),
            None => Setting::Unknown,
        }
    }

    fn context(&self) -> Context<'static> {
        let mut ctx = base_context();
        let object = |m: &BTreeMap<String, Value>| {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        };
        ctx.declare_var("var", object(&self.variables));
        ctx.declare_var("local", object(&self.locals));
        ctx.declare_var("module", object(&self.module_outputs));
        let dir = |p: &Path| {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            Value::String(p.to_string_lossy().into_owned())
        };
        let mut path = hcl::Map::new();
        path.insert("module".to_owned(), dir(&self.dir));
        path.insert("root".to_owned(), dir(&self.root));
        path.insert("cwd".to_owned(), dir(&self.root));
        ctx.declare_var("path", Value::Object(path));
        ctx
    }
}

/// Module block arguments that are not inputs.
const META_ARGUMENTS: &[&str] = &[
    "source",
    "version",
    "count",
    "for_each",
    "providers",
    "depends_on",
];

fn base_context() -> Context<'static> {
    let mut ctx = Context::new();
    let any = || FuncDef::builder().variadic_param(ParamType::Any);
    ctx.declare_func("jsonencode", any().build(f_jsonencode));
    ctx.declare_func("jsondecode", any().build(f_jsondecode));
    ctx.declare_func("file", any().build(f_file));
    ctx.declare_func("templatefile", any().build(f_templatefile));
    ctx.declare_func("tostring", any().build(f_tostring));
    ctx.declare_func("tonumber", any().build(f_tonumber));
    ctx.declare_func("max", any().build(f_max));
    ctx.declare_func("min", any().build(f_min));
    ctx.declare_func("coalesce", any().build(f_coalesce));
    ctx.declare_func("concat", any().build(f_concat));
    ctx.declare_func("merge", any().build(f_merge));
    ctx.declare_func("lookup", any().build(f_lookup));
    ctx.declare_func("length", any().build(f_length));
    ctx.declare_func("toset", any().build(f_identity));
    ctx.declare_func("tolist", any().build(f_identity));
    ctx.declare_func("keys", any().build(f_keys));
    ctx.declare_func("contains", any().build(f_contains));
    ctx.declare_func("lower", any().build(f_lower));
    ctx.declare_func("upper", any().build(f_upper));
    ctx
}

/// Partial evaluation: containers keep their known parts.
fn partial(expr: &Expression, ctx: &Context<'_>) -> Option<Value> {
    match expr {
        Expression::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|e| partial(e, ctx).unwrap_or_else(unknown))
                .collect(),
        )),
        Expression::Object(object) => {
            let mut map = hcl::Map::new();
            for (key, value) in object {
                let key = match key {
                    ObjectKey::Identifier(id) => id.to_string(),
                    ObjectKey::Expression(e) => match e.evaluate(ctx).ok()? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    _ => return None,
                };
                map.insert(key, partial(value, ctx).unwrap_or_else(unknown));
            }
            Some(Value::Object(map))
        }
        Expression::Parenthesis(inner) => partial(inner, ctx),
        Expression::FuncCall(call)
            if call.name.namespace.is_empty()
                && call.name.name.as_str() == "jsonencode"
                && call.args.len() == 1 =>
        {
            let arg = call.args.first().and_then(|a| partial(a, ctx))?;
            serde_json::to_string(&arg).ok().map(Value::String)
        }
        // The variables of a template may be partly unknown (an image URL known after apply):
        // the rest of the rendered text stays known, as with `jsonencode`.
        Expression::FuncCall(call)
            if call.name.namespace.is_empty()
                && call.name.name.as_str() == "templatefile"
                && call.args.len() == 2 =>
        {
            let path = partial(&call.args[0], ctx)?;
            let vars = partial(&call.args[1], ctx)?;
            templatefile(&path, vars).ok().map(Value::String)
        }
        other => other.evaluate(ctx).ok(),
    }
}

fn unknown() -> Value {
    Value::String(UNKNOWN.to_owned())
}

fn args(a: FuncArgs) -> Vec<Value> {
    a.into_values()
}

fn first(a: FuncArgs) -> Result<Value, String> {
    args(a)
        .into_iter()
        .next()
        .ok_or_else(|| "missing argument".to_owned())
}

fn f_identity(a: FuncArgs) -> Result<Value, String> {
    first(a)
}

fn f_jsonencode(a: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(&first(a)?)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn f_jsondecode(a: FuncArgs) -> Result<Value, String> {
    match first(a)? {
        Value::String(s) => serde_json::from_str(&s).map_err(|e| e.to_string()),
        other => Err(format!("jsondecode of {other}: expected a string")),
    }
}

/// Reads a file for `file()`/`templatefile()`: relative to the root module, a regular file of at
/// most [`MAX_FILE`] bytes, UTF-8.
fn read_config_file(path: &Value) -> Result<String, String> {
    let Value::String(p) = path else {
        return Err(format!("expected a path, got {path}"));
    };
    let p = Path::new(p);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        ROOT.with(|r| r.borrow().clone())
            .ok_or_else(|| "no root directory to resolve a relative path".to_owned())?
            .join(p)
    };
    let meta = std::fs::metadata(&full).map_err(|e| format!("{}: {e}", full.display()))?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return Err(format!(
            "{}: not a regular file of at most {MAX_FILE} bytes",
            full.display()
        ));
    }
    std::fs::read_to_string(&full).map_err(|e| format!("{}: {e}", full.display()))
}

fn f_file(a: FuncArgs) -> Result<Value, String> {
    read_config_file(&first(a)?).map(Value::String)
}

/// `templatefile(path, vars)`: the template is evaluated with only `vars` (and the functions)
/// in scope, as Terraform does.
fn f_templatefile(a: FuncArgs) -> Result<Value, String> {
    let mut args = args(a).into_iter();
    let path = args.next().ok_or_else(|| "missing path".to_owned())?;
    templatefile(&path, args.next().unwrap_or(Value::Null)).map(Value::String)
}

fn templatefile(path: &Value, vars: Value) -> Result<String, String> {
    let vars = match vars {
        Value::Object(vars) => vars,
        Value::Null => hcl::Map::new(),
        other => {
            return Err(format!(
                "templatefile vars: expected an object, got {other}"
            ));
        }
    };
    let text = read_config_file(path)?;
    let template: hcl::Template = text.parse().map_err(|e| format!("template: {e}"))?;
    let mut ctx = base_context();
    for (name, value) in vars {
        ctx.declare_var(name, value);
    }
    template.evaluate(&ctx).map_err(|e| e.to_string())
}

fn f_tostring(a: FuncArgs) -> Result<Value, String> {
    match first(a)? {
        Value::String(s) => Ok(Value::String(s)),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        other => Err(format!("cannot convert {other} to a string")),
    }
}

fn f_tonumber(a: FuncArgs) -> Result<Value, String> {
    let v = first(a)?;
    let n = number(&v).ok_or_else(|| format!("cannot convert {v} to a number"))?;
    Ok(Value::from(n))
}

fn numbers(a: FuncArgs) -> Result<Vec<f64>, String> {
    args(a)
        .iter()
        .map(|v| number(v).ok_or_else(|| format!("not a number: {v}")))
        .collect()
}

fn f_max(a: FuncArgs) -> Result<Value, String> {
    numbers(a)?
        .into_iter()
        .reduce(f64::max)
        .map(Value::from)
        .ok_or_else(|| "max needs an argument".to_owned())
}

fn f_min(a: FuncArgs) -> Result<Value, String> {
    numbers(a)?
        .into_iter()
        .reduce(f64::min)
        .map(Value::from)
        .ok_or_else(|| "min needs an argument".to_owned())
}

fn f_coalesce(a: FuncArgs) -> Result<Value, String> {
    args(a)
        .into_iter()
        .find(|v| !matches!(v, Value::Null) && v != &Value::String(String::new()))
        .ok_or_else(|| "no non-null argument".to_owned())
}

fn f_concat(a: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for v in args(a) {
        match v {
            Value::Array(items) => out.extend(items),
            other => return Err(format!("not a list: {other}")),
        }
    }
    Ok(Value::Array(out))
}

fn f_merge(a: FuncArgs) -> Result<Value, String> {
    let mut out = hcl::Map::new();
    for v in args(a) {
        match v {
            Value::Object(map) => out.extend(map),
            Value::Null => {}
            other => return Err(format!("not a map: {other}")),
        }
    }
    Ok(Value::Object(out))
}

fn f_lookup(a: FuncArgs) -> Result<Value, String> {
    let mut it = args(a).into_iter();
    let (Some(Value::Object(map)), Some(Value::String(key))) = (it.next(), it.next()) else {
        return Err("lookup needs a map and a key".to_owned());
    };
    map.get(&key)
        .cloned()
        .or_else(|| it.next())
        .ok_or_else(|| format!("no key {key:?}"))
}

fn f_length(a: FuncArgs) -> Result<Value, String> {
    match first(a)? {
        Value::Array(v) => Ok(Value::from(v.len() as u64)),
        Value::Object(m) => Ok(Value::from(m.len() as u64)),
        Value::String(s) => Ok(Value::from(s.chars().count() as u64)),
        other => Err(format!("no length: {other}")),
    }
}

fn f_keys(a: FuncArgs) -> Result<Value, String> {
    match first(a)? {
        Value::Object(m) => Ok(Value::Array(m.keys().cloned().map(Value::String).collect())),
        other => Err(format!("not a map: {other}")),
    }
}

fn f_contains(a: FuncArgs) -> Result<Value, String> {
    let mut it = args(a).into_iter();
    match (it.next(), it.next()) {
        (Some(Value::Array(items)), Some(v)) => Ok(Value::Bool(items.contains(&v))),
        _ => Err("contains needs a list and a value".to_owned()),
    }
}

fn f_lower(a: FuncArgs) -> Result<Value, String> {
    match first(a)? {
        Value::String(s) => Ok(Value::String(s.to_lowercase())),
        other => Err(format!("not a string: {other}")),
    }
}

fn f_upper(a: FuncArgs) -> Result<Value, String> {
    match first(a)? {
        Value::String(s) => Ok(Value::String(s.to_uppercase())),
        other => Err(format!("not a string: {other}")),
    }
}

/// Removes `.` and `name/..` components without touching the file system, so locations read
/// `terraform/modules/compute/main.tf`, not `terraform/envs/dev/../../modules/compute/main.tf`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The `.tf` files of a directory (not its subdirectories), in name order.
pub fn tf_files(dir: &Path) -> Result<Vec<PathBuf>, TerraformError> {
    let read_err = |source| TerraformError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses every `.tf` file of a directory into blocks with locations.
pub fn parse_dir(dir: &Path) -> Result<Vec<Block>, TerraformError> {
    let files = tf_files(dir)?;
    if files.is_empty() {
        return Err(TerraformError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    let mut blocks = Vec::new();
    for file in files {
        let body = parse_file(&file)?;
        blocks.extend(body.blocks);
    }
    Ok(blocks)
}

/// A parsed file: top-level attributes (tfvars) and blocks.
#[derive(Debug, Clone)]
pub struct FileBody {
    /// Top-level attributes.
    pub attributes: Vec<Attribute>,
    /// Top-level blocks.
    pub blocks: Vec<Block>,
}

/// Parses one HCL file.
pub fn parse_file(path: &Path) -> Result<FileBody, TerraformError> {
    let text = std::fs::read_to_string(path).map_err(|source| TerraformError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses HCL text; `path` is only used for locations and errors.
pub fn parse_str(text: &str, path: &Path) -> Result<FileBody, TerraformError> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| TerraformError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })?;
    let lines = LineIndex::new(text);
    let mut out = FileBody {
        attributes: Vec::new(),
        blocks: Vec::new(),
    };
    for structure in body.into_iter() {
        match structure {
            hcl::edit::structure::Structure::Attribute(a) => {
                out.attributes.push(attribute(a, path, &lines));
            }
            hcl::edit::structure::Structure::Block(b) => out.blocks.push(block(b, path, &lines)),
        }
    }
    Ok(out)
}

fn attribute(a: hcl::edit::structure::Attribute, path: &Path, lines: &LineIndex) -> Attribute {
    let location = Location {
        file: path.to_path_buf(),
        line: lines.line(a.span()),
    };
    let name = a.key.as_str().to_owned();
    Attribute {
        name,
        expr: a.value.into(),
        location,
    }
}

fn block(b: hcl::edit::structure::Block, path: &Path, lines: &LineIndex) -> Block {
    let location = Location {
        file: path.to_path_buf(),
        line: lines.line(b.span()),
    };
    let kind = b.ident.as_str().to_owned();
    let labels = b
        .labels
        .iter()
        .map(|l| match l {
            hcl::edit::structure::BlockLabel::Ident(i) => i.as_str().to_owned(),
            hcl::edit::structure::BlockLabel::String(s) => s.as_str().to_owned(),
        })
        .collect();
    let mut out = Block {
        kind,
        labels,
        attributes: Vec::new(),
        blocks: Vec::new(),
        location,
    };
    for structure in b.body.into_iter() {
        match structure {
            hcl::edit::structure::Structure::Attribute(a) => {
                out.attributes.push(attribute(a, path, lines));
            }
            hcl::edit::structure::Structure::Block(b) => out.blocks.push(block(b, path, lines)),
        }
    }
    out
}

/// Byte offset to 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        let Some(span) = span else { return 0 };
        match self.starts.binary_search(&span.start) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// `terraform.tfvars`, then `*.auto.tfvars` in name order, as Terraform loads them.
fn tfvars(dir: &Path) -> Result<BTreeMap<String, Setting>, TerraformError> {
    let mut files = Vec::new();
    let plain = dir.join("terraform.tfvars");
    if plain.is_file() {
        files.push(plain);
    }
    let mut auto: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| TerraformError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".auto.tfvars"))
        })
        .collect();
    auto.sort();
    files.extend(auto);
    let ctx = base_context();
    let mut out = BTreeMap::new();
    for file in files {
        for a in parse_file(&file)?.attributes {
            let setting = match partial(&a.expr, &ctx) {
                Some(v) => Setting::Known(v),
                None => Setting::Unknown,
            };
            out.insert(a.name, setting);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_point_at_block_headers_and_attributes() {
        let text = "# c\n\nresource \"aws_lb\" \"x\" {\n  # note\n  idle_timeout = 60\n  sub {\n    a = 1\n  }\n}\n";
        let body = parse_str(text, Path::new("m.tf")).unwrap();
        let b = &body.blocks[0];
        assert_eq!(b.location.line, 3);
        assert_eq!(b.attribute("idle_timeout").unwrap().location.line, 5);
        assert_eq!(b.block("sub").unwrap().location.line, 6);
        assert_eq!(
            b.block("sub")
                .unwrap()
                .attribute("a")
                .unwrap()
                .location
                .line,
            7
        );
    }

    #[test]
    fn partial_evaluation_keeps_known_parts() {
        let text = "x = jsonencode([{ image = aws_ecr_repository.r.url, stopTimeout = 30 }])\ny = aws_x.y.z\nz = max(1, 5)\n";
        let body = parse_str(text, Path::new("m.tf")).unwrap();
        let ctx = base_context();
        let x = partial(&body.attributes[0].expr, &ctx).unwrap();
        let Value::String(json) = x else { panic!() };
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["stopTimeout"], 30);
        assert_eq!(parsed[0]["image"], UNKNOWN);
        assert!(partial(&body.attributes[1].expr, &ctx).is_none());
        assert_eq!(
            number(&partial(&body.attributes[2].expr, &ctx).unwrap()),
            Some(5.0)
        );
    }

    #[test]
    fn file_and_templatefile_read_relative_to_the_module_and_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("svc")).unwrap();
        std::fs::write(root.join("main.tf"), "module \"svc\" {\n  source = \"./svc\"\n  port = 8080\n}\nlocals {\n  plain = file(\"root.txt\")\n}\n").unwrap();
        std::fs::write(root.join("root.txt"), "from the root").unwrap();
        std::fs::write(
            root.join("svc/main.tf"),
            "variable \"port\" {}\nlocals {\n  \
             containers = templatefile(\"${path.module}/c.json.tftpl\", { port = var.port, image = aws_ecr_repository.r.repository_url })\n  \
             raw = jsondecode(file(\"${path.module}/c.json\"))\n  \
             missing = file(\"${path.module}/nope.json\")\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("svc/c.json.tftpl"),
            "[{\"name\": \"app\", \"image\": \"${image}\", \"portMappings\": [{\"containerPort\": ${port}}]%{ if port > 0 }, \"stopTimeout\": 30%{ endif }}]",
        )
        .unwrap();
        std::fs::write(root.join("svc/c.json"), "{\"stopTimeout\": 45}").unwrap();
        let cfg = Config::load(root).unwrap();
        assert_eq!(
            cfg.root.locals.get("plain"),
            Some(&Value::String("from the root".into()))
        );
        let svc = &cfg.root.children[0];
        let Some(Value::String(text)) = svc.locals.get("containers") else {
            panic!("templatefile not evaluated: {:?}", svc.locals);
        };
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json[0]["portMappings"][0]["containerPort"], 8080);
        assert_eq!(json[0]["stopTimeout"], 30);
        assert_eq!(
            json[0]["image"], UNKNOWN,
            "known after apply, the rest known"
        );
        assert_eq!(
            svc.locals
                .get("raw")
                .and_then(|v| v.as_object())
                .and_then(|o| o.get("stopTimeout"))
                .and_then(number),
            Some(45.0)
        );
        assert!(
            !svc.locals.contains_key("missing"),
            "an unreadable file is unknown"
        );
    }
}
