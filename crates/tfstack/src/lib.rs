//! `tfstack`: a Terraform configuration read statically, and the [`stack::Stack`] it describes.
//!
//! - [`terraform`] parses the `.tf` files of a root module and its local modules and evaluates
//!   what is known before `terraform plan` (variables, tfvars, locals, module outputs, a few
//!   functions); everything else is *unknown*, as "(known after apply)" is in a plan.
//! - [`derive`] follows the references between resources and maps each AWS service's resources
//!   to the stack `localaws` stands up; a setting not known before apply becomes an
//!   [`derive::Assumption`] (where, why, the value used), never a silent guess.
//!
//! `orchestrate preflight` reads the same [`terraform::Config`]; `localaws --terraform DIR` and
//! `orchestrate rehearse --terraform DIR` serve the derived stack.

pub mod derive;
pub mod terraform;
