//! The pure core: the API types and everything decided about them, with no
//! I/O. Every function here takes its inputs (objects, the time) as
//! arguments and returns its result; the operator and the commands do the
//! reading and writing. Nothing here imports [`crate::operator`] or
//! [`crate::commands`].

pub(crate) mod admission;
pub mod api;
pub(crate) mod decoding;
pub mod desired_status;
pub(crate) mod field_error;
pub mod index;
pub mod printable;
pub mod validation;
