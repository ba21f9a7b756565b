//! The `Sessions` service (operators): create, inspect, cancel, watch and export closed-loop
//! sessions, and list consoles. Work in progress: the session runner lands next.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Shared;
use super::pb;

/// The `Sessions` service over the shared daemon state.
#[derive(Clone)]
pub struct SessionsService {
    /// Shared daemon state.
    pub shared: Shared,
}

impl SessionsService {
    /// The service.
    pub fn new(shared: Shared) -> Self {
        SessionsService { shared }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::sessions_server::Sessions for SessionsService {
    async fn create_session(
        &self,
        _r: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        Err(Status::unimplemented("CreateSession is not built yet"))
    }
    async fn get_session(
        &self,
        _r: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        Err(Status::unimplemented("GetSession is not built yet"))
    }
    async fn list_sessions(
        &self,
        _r: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Err(Status::unimplemented("ListSessions is not built yet"))
    }
    async fn cancel_session(
        &self,
        _r: Request<pb::CancelSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        Err(Status::unimplemented("CancelSession is not built yet"))
    }
    type WatchSessionStream = BoxStream<pb::SessionEvent>;
    async fn watch_session(
        &self,
        _r: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        Err(Status::unimplemented("WatchSession is not built yet"))
    }
    type ExportSessionStream = BoxStream<pb::ExportChunk>;
    async fn export_session(
        &self,
        _r: Request<pb::ExportSessionRequest>,
    ) -> Result<Response<Self::ExportSessionStream>, Status> {
        Err(Status::unimplemented("ExportSession is not built yet"))
    }
    async fn list_consoles(
        &self,
        _r: Request<pb::ListConsolesRequest>,
    ) -> Result<Response<pb::ListConsolesResponse>, Status> {
        Err(Status::unimplemented("ListConsoles is not built yet"))
    }
}

/// Resumes every open session found in the store (after a restart). Returns how many.
pub async fn resume_open_sessions(_shared: &Shared) -> Result<usize, super::DaemonError> {
    Ok(0)
}
