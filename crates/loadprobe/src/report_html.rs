//! HTML report.
use crate::report::Report;
pub(crate) fn render(r: &Report) -> String {
    r.summary()
}
