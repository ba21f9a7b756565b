"""A Python gRPC client of spinloopd, generated from our protos with grpcio-tools: proof that the
API works from the ecosystem (tests/grpc_peer.rs runs it against an in-process daemon with a
simulated console connected).

Usage: grpc_client_peer.py SOCKET_PATH CONSOLE_ID PROTO_DIR OUT_DIR

It generates the stubs into OUT_DIR, then:
  1. grpc.health.v1: Check("") and Check for each spinloop service are SERVING;
  2. server reflection (v1alpha, as grpcurl speaks it) lists the spinloop services;
  3. Sessions.ListConsoles shows the console connected;
  4. Sessions.CreateSession with a structured spec, then WatchSession(until_done) reads every
     event to the end; the last is "converged" and events arrive in sequence order;
  5. Sessions.GetSession shows the state CONVERGED and a fitted b1_scale;
  6. a bad request (unknown metabolite) gets INVALID_ARGUMENT.
Prints one JSON line with what it saw; exits non-zero on any failed check.
"""

import json
import sys


def main():
    socket_path, console_id, proto_dir, out_dir = sys.argv[1:5]
    from grpc_tools import protoc

    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "spinloop/v1/console.proto",
        "spinloop/v1/sessions.proto",
        "spinloop/v1/design.proto",
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed: {rc}")
    sys.path.insert(0, out_dir)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    from spinloop.v1 import sessions_pb2, sessions_pb2_grpc

    # grpc-core would send the socket path as the HTTP/2 :authority, which is not a valid
    # authority and is refused (PROTOCOL_ERROR) by spec-conforming servers; name the host.
    channel = grpc.insecure_channel(
        f"unix:{socket_path}", options=[("grpc.default_authority", "localhost")]
    )
    grpc.channel_ready_future(channel).result(timeout=10)
    seen = {}

    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "spinloop.v1.Console", "spinloop.v1.Sessions", "spinloop.v1.Design"]:
        r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING, (service, r.status)
    seen["health"] = "SERVING"

    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    services = sorted(s.name for r in responses for s in r.list_services_response.service)
    for s in ["spinloop.v1.Console", "spinloop.v1.Sessions", "spinloop.v1.Design", "grpc.health.v1.Health"]:
        assert s in services, (s, services)
    seen["reflection_v1alpha"] = services

    stub = sessions_pb2_grpc.SessionsStub(channel)
    consoles = stub.ListConsoles(sessions_pb2.ListConsolesRequest(), timeout=5).consoles
    assert any(c.console_id == console_id and c.connected for c in consoles), consoles

    spec = sessions_pb2.SessionSpec(
        console_id=console_id,
        targets=["NAA", "Cr"],
        concentrations=[12.0, 8.0],
        objective=[sessions_pb2.ObjectivePart(
            kind="enhancement", metabolite="NAA", window_lo_ppm=1.9, window_hi_ppm=2.1, weight=1.0)],
        sequence=sessions_pb2.Sequence(kind="pulse_acquire"),
        pulse=sessions_pb2.Pulse(segments=40, dt_s=20e-6),
        constraints=sessions_pb2.Constraints(energy_weight=0.05, smoothness_weight=1e-3),
        budget=sessions_pb2.Budget(max_acquisitions=12, max_rounds=5, optimizer_iterations=25),
        linewidth_hz=4.0,
        label="created from Python grpcio",
    )
    session = stub.CreateSession(sessions_pb2.CreateSessionRequest(spec=spec), timeout=60)
    assert session.state == sessions_pb2.SESSION_STATE_OPEN, session.state

    kinds, last = [], 0
    for e in stub.WatchSession(
        sessions_pb2.WatchSessionRequest(session_id=session.id, until_done=True), timeout=240
    ):
        assert e.seq > last, (e.seq, last)
        last = e.seq
        json.loads(e.payload_json)
        kinds.append(e.kind)
    assert kinds[0] == "created", kinds
    assert kinds[-1] == "converged", kinds
    seen["events"] = kinds

    final = stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session.id), timeout=10)
    assert final.state == sessions_pb2.SESSION_STATE_CONVERGED, final.state
    b1 = [p for p in final.hardware if p.name == "b1_scale"]
    assert b1, final.hardware
    seen["b1_scale"] = [b1[0].value, b1[0].std_error]

    bad = sessions_pb2.SessionSpec()
    bad.CopyFrom(spec)
    del bad.targets[:]
    bad.targets.append("Unobtainium")
    del bad.concentrations[:]
    try:
        stub.CreateSession(sessions_pb2.CreateSessionRequest(spec=bad), timeout=30)
        raise AssertionError("a bad spec was accepted")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.code()
        assert "Unobtainium" in err.details(), err.details()
    seen["bad_spec"] = "INVALID_ARGUMENT"
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
