//! Installing: reading a bundle (one strict checker for verify, inspect and unpack), the
//! safe unpack into staging, the install steps, relocation, and the record of an installed
//! tree.
//!
//! Architecture invariant: installing never plans or writes a bundle; `verify` and `unpack`
//! share one checker ([`read`]) and one check of the install steps ([`steps`]), so a bundle
//! that verifies is exactly a bundle that unpacks.

pub(crate) mod copy;
pub mod delta;
pub(crate) mod dest;
pub(crate) mod hashing;
pub mod installed;
pub mod read;
pub mod relocate;
pub mod source;
pub mod space;
pub mod stale;
pub mod steps;
pub mod unpack;
