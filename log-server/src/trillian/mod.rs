//! Trillian as a back end: the gRPC types generated from `proto/` (Trillian's log and admin API,
//! the subset used here), Trillian's TLS-encoded `LogRootV1`, and a client that copes with
//! Trillian's real behaviour (lagging servers, duplicate leaves, transient unavailability).

pub mod client;
pub mod follower;
pub mod log_root;

/// Generated protobuf and gRPC types.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// Package `trillian`.
    pub mod trillian {
        tonic::include_proto!("trillian");
    }
    /// Package `google.rpc`.
    pub mod google {
        /// `google.rpc.Status`.
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}
