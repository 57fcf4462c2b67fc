//! What a rehearsal runs on: the embedded demo stack, or the stack a Terraform configuration
//! describes, with the assumptions made deriving it and the configuration's preflight hazards.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use localaws::Stack;
use tfstack::derive::{self, Assumption, DeriveOptions, RefreshPrefs};

use super::release::release_template;
use super::scenarios::KNOBS_LABEL;
use super::{Kind, RehearseArgs, RehearseError, Scenario};
use crate::preflight::Hazard;

/// The rehearsal's stack: `localaws`'s embedded default (the dev environment's names) at
/// `time_scale`, with an application that drains for 1 s, managed draining as given.
pub fn stack(managed_draining: bool, time_scale: f64) -> Result<Stack, RehearseError> {
    Stack::rehearsal(managed_draining, time_scale).map_err(|e| RehearseError::Run(e.to_string()))
}

/// What a rehearsal runs on: the embedded demo stack, or the stack derived from a Terraform
/// configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The stack (at the rehearsal's time scale; managed draining as configured).
    pub stack: Stack,
    /// Set when the stack was derived with `--terraform`.
    pub derived: Option<DerivedSetup>,
    /// The stack's Docker images and the rehearsal knobs each declares (its
    /// [`KNOBS_LABEL`](super::scenarios::KNOBS_LABEL)), read by [`Setup::inspect_images`].
    pub images: Vec<(String, Vec<String>)>,
}

/// A stack derived from Terraform, with what the rehearsal reports beside it.
#[derive(Debug, Clone)]
pub struct DerivedSetup {
    /// The configuration's root module.
    pub dir: PathBuf,
    /// Its instance refresh preferences (the `refresh` scenario starts refreshes with them).
    pub refresh: RefreshPrefs,
    /// Values not known before apply and what was used instead.
    pub assumptions: Vec<Assumption>,
    /// The configuration's preflight hazards (errors and warnings).
    pub hazards: Vec<Hazard>,
    /// How long reading the configuration and deriving the stack took.
    pub elapsed: Duration,
    /// `--task-definition`, rendered for localaws: what the blue/green scenarios release.
    pub release: Option<serde_json::Value>,
}

impl Setup {
    /// The embedded demo stack, tuned for rehearsals.
    pub fn embedded(time_scale: f64) -> Result<Setup, RehearseError> {
        Ok(Setup {
            stack: stack(true, time_scale)?,
            derived: None,
            images: Vec::new(),
        })
    }

    /// The stack `dir`'s Terraform describes (`--image NAME=COMMAND` flags in `images`), and
    /// the task definition file deploys register, if given.
    pub fn terraform(
        dir: &Path,
        images: &[String],
        task_definition: Option<&Path>,
        time_scale: f64,
    ) -> Result<Setup, RehearseError> {
        let began = Instant::now();
        let mut options = DeriveOptions {
            time_scale: Some(time_scale),
            ..DeriveOptions::default()
        };
        for flag in images {
            options.images.push(
                DeriveOptions::parse_image(flag)
                    .map_err(|e| RehearseError::Input(e.to_string()))?,
            );
        }
        let cfg = tfstack::terraform::Config::load(dir)
            .map_err(|e| RehearseError::Input(format!("--terraform: {e}")))?;
        let mut derived = derive::derive(&cfg, &options)
            .map_err(|e| RehearseError::Input(format!("--terraform {}: {e}", dir.display())))?;
        let (release, checked) = match task_definition {
            Some(file) => {
                let (json, assumed) = release_template(file, &derived.stack)?;
                derived.assumptions.extend(assumed);
                let checked = crate::preflight::TaskDefinition::from_file(file)
                    .map_err(|e| RehearseError::Input(format!("--task-definition: {e}")))?;
                (Some(json), Some(checked))
            }
            None => (None, None),
        };
        let hazards = crate::preflight::check(&crate::preflight::Inputs {
            terraform: Some(cfg),
            task_definition: checked,
            appspec: None,
        });
        Ok(Setup {
            stack: derived.stack,
            derived: Some(DerivedSetup {
                dir: dir.to_path_buf(),
                refresh: derived.refresh,
                assumptions: derived.assumptions,
                hazards,
                elapsed: began.elapsed(),
                release,
            }),
            images: Vec::new(),
        })
    }

    pub(super) fn from_args(args: &RehearseArgs) -> Result<Setup, RehearseError> {
        match &args.terraform {
            Some(dir) => Setup::terraform(
                dir,
                &args.images,
                args.task_definition.as_deref(),
                args.time_scale,
            ),
            None => Setup::embedded(args.time_scale),
        }
    }

    /// Reads which rehearsal knobs each Docker image of the stack declares; an image that is
    /// not on the engine, or an engine that cannot be reached, is an input error before
    /// anything starts.
    pub async fn inspect_images(&mut self) -> Result<(), RehearseError> {
        let references: std::collections::BTreeSet<String> = self
            .stack
            .images
            .values()
            .filter_map(|i| i.docker.clone())
            .collect();
        self.images.clear();
        for reference in references {
            let labels = localaws::image_labels(&reference)
                .await
                .map_err(|e| RehearseError::Input(format!("--image docker:{reference}: {e}")))?;
            let knobs = labels
                .get(KNOBS_LABEL)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            self.images.push((reference, knobs));
        }
        Ok(())
    }

    /// Why a scenario cannot run on this stack: no Auto Scaling group to refresh, no
    /// deployment group to deploy through, or a Docker image that does not declare a knob of
    /// the project's server the scenario needs (its variable cannot be flipped inside that
    /// image: not run, rather than a silent pass or a fake failure).
    pub fn unsupported(&self, s: &Scenario) -> Option<String> {
        match s.kind {
            Kind::Refresh if self.stack.auto_scaling_group.is_none() => {
                return Some("no Auto Scaling group to refresh".to_owned());
            }
            Kind::Deploy { .. } if self.deployment_group().is_none() => {
                return Some("no CodeDeploy deployment group".to_owned());
            }
            _ => {}
        }
        for (image, declared) in &self.images {
            let missing: Vec<&str> = s
                .knobs()
                .into_iter()
                .filter(|k| !declared.iter().any(|d| d == k))
                .collect();
            if !missing.is_empty() {
                return Some(format!(
                    "needs the project server's {} inside image {image}, which does not declare \
                     it (image label {KNOBS_LABEL}); everything else runs against the image",
                    missing.join(" and ")
                ));
            }
        }
        None
    }

    /// The first CodeDeploy application and deployment group.
    pub(super) fn deployment_group(&self) -> Option<(&str, &stack::DeploymentGroupConfig)> {
        self.stack
            .codedeploy
            .as_ref()?
            .applications
            .iter()
            .find_map(|a| a.deployment_groups.first().map(|g| (a.name.as_str(), g)))
    }
}

/// `--print-stack`: the derived stack as TOML, its assumptions as comments on top.
pub fn print_stack(args: &RehearseArgs, out: &mut dyn std::io::Write) -> Result<(), RehearseError> {
    let setup = Setup::from_args(args)?;
    let Some(d) = &setup.derived else {
        return Err(RehearseError::Input(
            "--print-stack needs --terraform DIR".into(),
        ));
    };
    let mut text = format!(
        "# localaws stack derived from the Terraform configuration in {} by orchestrate rehearse\n# ({} ms). Values not known before apply, and what this stack uses instead:\n",
        d.dir.display(),
        d.elapsed.as_millis()
    );
    if d.assumptions.is_empty() {
        text.push_str("#   none\n");
    }
    for a in &d.assumptions {
        let _ = writeln!(text, "#   {a}");
    }
    text.push('\n');
    text.push_str(
        &toml::to_string(&setup.stack)
            .map_err(|e| RehearseError::Run(format!("writing the stack as TOML: {e}")))?,
    );
    out.write_all(text.as_bytes())
        .map_err(|e| RehearseError::Run(format!("writing the stack: {e}")))
}
