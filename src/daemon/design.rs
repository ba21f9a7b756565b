//! The `Design` service: offline simulation and optimization of problem files, streaming
//! progress. Work in progress.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::pb;

/// The `Design` service (stateless).
#[derive(Clone, Default)]
pub struct DesignService;

impl DesignService {
    /// The service.
    pub fn new() -> Self {
        DesignService
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::design_server::Design for DesignService {
    async fn simulate(
        &self,
        _r: Request<pb::SimulateRequest>,
    ) -> Result<Response<pb::SimulateResponse>, Status> {
        Err(Status::unimplemented("Simulate is not built yet"))
    }
    type OptimizeStream = BoxStream<pb::OptimizeProgress>;
    async fn optimize(
        &self,
        _r: Request<pb::OptimizeRequest>,
    ) -> Result<Response<Self::OptimizeStream>, Status> {
        Err(Status::unimplemented("Optimize is not built yet"))
    }
}
