//! Nothing but a build of `arcane-client` without its `development` feature, as an application
//! that embeds the SDK gets it; the tests check what such a build must refuse.
