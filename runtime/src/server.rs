//! The server: every `kar.v1` service, server reflection (v1 and v1alpha)
//! and `grpc.health.v1` over gRPC, and the JSON gateway over HTTP/1.1, on
//! one listener (HTTP/1.1 and h2c side by side; gRPC is told apart by its
//! content type).

use crate::api::{ActorsApi, AppApi, EventsApi, Limits, MeshApi, RemindersApi, ServicesApi, StateApi};
use crate::engine::Engine;
use crate::gateway::Gateway;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kar_proto::v1::{
    actors_service_server::ActorsServiceServer, app_service_server::AppServiceServer,
    events_service_server::EventsServiceServer, mesh_service_server::MeshServiceServer,
    reminders_service_server::RemindersServiceServer, services_service_server::ServicesServiceServer,
    state_service_server::StateServiceServer,
};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::service::Routes;

/// A failure to build or run the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reflection service could not read the descriptor set.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The JSON gateway could not be built from the descriptors.
    #[error("gateway: {0}")]
    Gateway(#[from] crate::gateway::Error),
}

/// Serves the API for `engine` on `listener` until `shutdown` resolves.
pub async fn serve(
    engine: Engine,
    limits: Limits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let max_message = limits.max_payload_bytes + 64 * 1024;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kar_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ActorsServiceServer<ActorsApi>>().await;
    health.set_serving::<ServicesServiceServer<ServicesApi>>().await;
    health.set_serving::<StateServiceServer<StateApi>>().await;
    health.set_serving::<AppServiceServer<AppApi>>().await;
    health.set_serving::<MeshServiceServer<MeshApi>>().await;
    health.set_serving::<RemindersServiceServer<RemindersApi>>().await;
    health.set_serving::<EventsServiceServer<EventsApi>>().await;

    let routes = Routes::new(
        ActorsServiceServer::new(ActorsApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
    )
    .add_service(
        ServicesServiceServer::new(ServicesApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
    )
    .add_service(StateServiceServer::new(StateApi::new(engine.clone(), limits)).max_decoding_message_size(max_message))
    .add_service(AppServiceServer::new(AppApi::new(engine.clone())).max_decoding_message_size(max_message))
    .add_service(
        RemindersServiceServer::new(RemindersApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
    )
    .add_service(
        EventsServiceServer::new(EventsApi::new(engine.clone(), limits)).max_decoding_message_size(max_message),
    )
    .add_service(MeshServiceServer::new(MeshApi::new(engine)))
    .add_service(health_service)
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha)
    .prepare();
    // A JSON body may be somewhat larger than the payload it carries.
    let gateway = Gateway::new(max_message)?;
    let service = TowerToHyperService::new(gateway.service(routes));

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response messages must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
