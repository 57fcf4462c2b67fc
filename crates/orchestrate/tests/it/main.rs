//! The `orchestrate` binary and library: preflight's hazards on the project's own configuration
//! and on the original project's flawed one, each hazard beside its fixed twin; refresh, deploy
//! and rehearse end to end against an in-process `localaws`; rehearsals of stacks derived from
//! Terraform; the CodeDeploy templates and the deploy role's IAM policy.

#![allow(clippy::unwrap_used)]
// Tests read as scripts of one behaviour; their length is not a function to split.
#![allow(clippy::too_many_lines)]

mod cli; // the binary's exit codes 0/1/2, the human report, --json, defaults
mod codedeploy; // the CodeDeploy templates: placeholders documented, rendered they still parse
mod docker; // rehearse --terraform with the tasks as containers of the project's image
mod hazards; // every preflight hazard beside its fixed twin
mod iam; // every AWS call is granted by the deploy role's policy and documented
mod rollout; // refresh, deploy and rehearse end to end on an in-process localaws
mod terraform; // the project's Terraform read without Terraform, held to the invariants
mod tfstack; // rehearse --terraform: stacks derived from Terraform, flaws flip their scenario
mod util; // paths, fixtures, a scratch configuration builder, fleet slots
