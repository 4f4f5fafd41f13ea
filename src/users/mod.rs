//! People: the accounts chatctl creates (one way, [`accounts`]), bulk import from other
//! systems ([`import`]), export, and deactivation.

pub mod accounts;
pub mod export;
pub mod import;
pub mod input;
pub mod manage;
