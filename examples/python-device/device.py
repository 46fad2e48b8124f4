#!/usr/bin/env python3
"""A minimal droidfleet.v1 device in Python, written from the .proto files and PROTOCOL.md alone.

It plays one dedicated (COSU) Android device: it enrolls, keeps a Session open (reconnecting with
backoff), escrows its reset token, verifies every command's and policy's Ed25519 signature over
the exact body bytes it received, under the id of the one key it trusts (refusing forged,
misrouted and replayed ones), follows key updates that key signed, acknowledges what
it accepts, and runs passcode resets and remote locks against
a small model of the device's lock screen, persisting its state before it reports anything. It has
no DeviceHarness: a conformance run reports the cases that need one as not applicable.

    python3 device.py --gateway 127.0.0.1:7400 --enrollment-token TOKEN --state-dir ./state

The gRPC stubs are generated from proto/proto/droidfleet/v1/*.proto at start-up (into ./generated,
never committed) with grpcio-tools.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import pathlib
import random
import secrets
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto" / "proto"
GENERATED = HERE / "generated"

# PROTOCOL.md, passcode rules.
MIN_LENGTH = 4
MAX_LENGTH = 16
MAX_ALLOWED_SEQUENCE = 3
# The Android API level the device reports in its Hello: the newest, whose rules it follows.
API_LEVEL = 35


def generate_stubs():
    """Generates the Python messages and gRPC stubs from the .proto files."""
    from grpc_tools import protoc

    GENERATED.mkdir(exist_ok=True)
    protos = sorted(str(p) for p in (PROTO_ROOT / "droidfleet" / "v1").glob("*.proto"))
    code = protoc.main(
        ["protoc", f"-I{PROTO_ROOT}", f"--python_out={GENERATED}", f"--grpc_python_out={GENERATED}"]
        + protos
    )
    if code != 0:
        sys.exit(f"protoc failed ({code}) on {PROTO_ROOT}")


def now_ms():
    return int(time.time() * 1000)


def log(text):
    # Never a passcode, token or credential: only ids and outcomes.
    print(f"python-device: {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- passcode rules (DEV-PASSCODE-*)


def category(ch):
    if "a" <= ch <= "z":
        return "lower"
    if "A" <= ch <= "Z":
        return "upper"
    if "0" <= ch <= "9":
        return "digit"
    return "symbol"


MAX_STEP = {"lower": 1, "upper": 1, "digit": 10, "symbol": 0}


def max_sequence_length(text):
    """The longest run of one category whose characters repeat or change by a constant step."""
    if not text:
        return 0
    previous = text[0]
    cat = category(previous)
    step = 0
    has_step = False
    longest = 0
    start = 0
    for current in range(1, len(text)):
        ch = text[current]
        current_cat = category(ch)
        current_step = ord(ch) - ord(previous)
        if current_cat != cat or abs(current_step) > MAX_STEP[cat]:
            longest = max(longest, current - start)
            start = current
            has_step = False
            cat = current_cat
        else:
            if has_step and current_step != step:
                longest = max(longest, current - start)
                start = current - 1
            step = current_step
            has_step = True
        previous = ch
    return max(longest, len(text) - start)


def policy_violation(policy, passcode, pb):
    """The first rule `passcode` breaks under `policy` (a PasscodePolicy or None), or None."""
    if not all(0x20 <= ord(c) <= 0x7E for c in passcode):
        return "the passcode contains characters the policy does not allow"
    is_pin = all(c.isdigit() and c.isascii() for c in passcode)
    ptype = policy.type if policy is not None else pb.PASSCODE_TYPE_UNSPECIFIED
    complexity = policy.complexity if policy is not None else pb.PASSCODE_COMPLEXITY_UNSPECIFIED
    if ptype in (pb.PASSCODE_TYPE_PIN, pb.PASSCODE_TYPE_NUMERIC_COMPLEX) and not is_pin:
        return "the passcode contains characters the policy does not allow"
    if ptype in (pb.PASSCODE_TYPE_ALPHANUMERIC, pb.PASSCODE_TYPE_COMPLEX) and is_pin:
        return "the passcode is a PIN but the policy requires a password"
    if len(passcode) > MAX_LENGTH:
        return f"the passcode is longer than {MAX_LENGTH} characters"
    bucket = 0
    if complexity == pb.PASSCODE_COMPLEXITY_HIGH:
        bucket = 8 if is_pin else 6
    elif complexity == pb.PASSCODE_COMPLEXITY_MEDIUM:
        bucket = 4
    minimum = min(max(policy.min_length if policy is not None else 0, bucket, MIN_LENGTH), MAX_LENGTH)
    if len(passcode) < minimum:
        return f"the passcode is shorter than {minimum} characters"
    counts = {"letters": 0, "upper": 0, "lower": 0, "digits": 0, "symbols": 0, "non_letters": 0}
    for c in passcode:
        cat = category(c)
        if cat in ("lower", "upper"):
            counts["letters"] += 1
            counts[cat] += 1
        elif cat == "digit":
            counts["digits"] += 1
            counts["non_letters"] += 1
        else:
            counts["symbols"] += 1
            counts["non_letters"] += 1
    required = {}
    if ptype == pb.PASSCODE_TYPE_ALPHANUMERIC:
        required = {"letters": 1, "digits": 1}
    elif ptype == pb.PASSCODE_TYPE_COMPLEX:
        required = {
            "letters": policy.min_letters,
            "upper": policy.min_upper_case,
            "lower": policy.min_lower_case,
            "digits": policy.min_digits,
            "symbols": policy.min_symbols,
            "non_letters": policy.min_non_letters,
        }
    for key in ("letters", "upper", "lower", "digits", "symbols", "non_letters"):
        if counts[key] < required.get(key, 0):
            return f"the passcode has fewer than {required[key]} {key.replace('_', '-')}"
    # DEV-PASSCODE-3: a PIN under numeric complex, and any passcode at medium or high complexity.
    forbids_sequence = (
        is_pin and ptype == pb.PASSCODE_TYPE_NUMERIC_COMPLEX
    ) or complexity >= pb.PASSCODE_COMPLEXITY_MEDIUM
    if forbids_sequence and max_sequence_length(passcode) > MAX_ALLOWED_SEQUENCE:
        return "the passcode contains a repeating or ordered sequence such as 1111 or 1234"
    return None


# ---------------------------------------------------------------- the device


class Device:
    """One COSU device: its persisted state, its session, and the commands it runs."""

    def __init__(self, args, modules):
        self.args = args
        self.pb, self.gw, self.gw_grpc = modules
        self.state_path = pathlib.Path(args.state_dir) / "device.json"
        self.state = self.load()
        # A pending token lives in memory only, as on Android: a restart loses it.
        self.pending_token = None
        self.outbound = None
        # What a session proof signs of the CA this device trusts: SHA-256 of its certificate
        # (DER), or 32 zero bytes on a plaintext gateway.
        self.ca_fingerprint = bytes(32)
        if self.state.get("device_id") and self.state["store"].get("token") is None:
            self.new_token()

    # -- persistence (DEV-PERSIST-1): written atomically before any report leaves

    def load(self):
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            if state.get("device_id") and not state.get("device_key"):
                # Enrolled with a bearer credential, which control planes no longer accept.
                sys.exit(
                    f"{self.state_path} is from before devices proved possession of a key pair: "
                    "re-enroll this device (move the file away and start it with a new enrollment token)"
                )
            return state
        return {
            "device_id": None,
            # The seed of the Ed25519 key this device enrolled with (hex); it signs every
            # session's proof (DEV-SESSION-4).
            "device_key": None,
            "public_key": None,
            "store": {
                "passcode_sha256": None,
                "token": None,
                "locked": False,
                "require_entry": None,
                "policy": None,
                "policy_version": None,
            },
            "commands": {},
            "highest_sequence": None,
        }

    def persist(self):
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        with open(temporary, "w") as file:
            json.dump(self.state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.state_path)

    # -- the store model

    @property
    def store(self):
        return self.state["store"]

    def new_token(self):
        """The management app sets a token: active at once without a passcode, else pending."""
        token = secrets.token_bytes(32)
        if self.store["passcode_sha256"] is None:
            self.store["token"] = token.hex()
            self.pending_token = None
        else:
            self.store["token"] = None
            self.pending_token = token
        return token

    def current_token(self):
        if self.store["token"] is not None:
            return bytes.fromhex(self.store["token"])
        return self.pending_token

    def policy(self):
        raw = self.store["policy"]
        if raw is None:
            return None
        return self.pb.PasscodePolicy.FromString(bytes.fromhex(raw))

    def store_status(self):
        pb = self.pb
        if self.store["token"] is not None:
            token_state = pb.TOKEN_STATE_ACTIVE
        elif self.pending_token is not None:
            token_state = pb.TOKEN_STATE_PENDING
        else:
            token_state = pb.TOKEN_STATE_NONE
        return pb.StoreStatus(
            scope=pb.CREDENTIAL_SCOPE_DEVICE,
            has_passcode=self.store["passcode_sha256"] is not None,
            locked=self.store["locked"],
            token_state=token_state,
            require_entry=self.store["require_entry"] is not None,
        )

    def status_message(self):
        return self.gw.DeviceMessage(status=self.gw.DeviceStatus(stores=[self.store_status()]))

    def escrow_message(self, token):
        return self.gw.DeviceMessage(
            escrow_token=self.gw.EscrowTokenUpdate(scope=self.pb.CREDENTIAL_SCOPE_DEVICE, token=token)
        )

    # -- the session

    async def send(self, message):
        await self.outbound.put(message)

    async def requests(self, queue):
        while True:
            message = await queue.get()
            if message is None:
                return
            yield message

    def result(self, command_id, code=None, reason=""):
        return self.gw.CommandResult(
            command_id=command_id,
            success=code is None,
            error_code=code or 0,
            reason=reason,
            completed_at_ms=now_ms(),
        )

    async def enroll(self, channel):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        # DEV-ENROLL-2: a key pair of its own for this enrollment; the control plane keeps the
        # public key.
        key = Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw
        seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        stub = self.gw_grpc.DeviceGatewayStub(channel)
        response = await stub.Enroll(
            self.gw.EnrollRequest(
                enrollment_token=self.args.enrollment_token,
                ownership=self.pb.OWNERSHIP_COSU,
                display_name=self.args.name,
                device_public_key=public,
            )
        )
        self.state["device_id"] = response.device_id
        self.state["device_key"] = seed.hex()
        self.state["public_key"] = response.command_signing_public_key.hex()
        self.new_token()
        self.persist()
        log(f"enrolled as {response.device_id}")

    async def session(self, channel):
        """One session; returns when it ends cleanly, raises when it breaks."""
        stub = self.gw_grpc.DeviceGatewayStub(channel)
        self.outbound = asyncio.Queue()
        hello = self.gw.Hello(
            device_id=self.state["device_id"],
            agent_version="droidfleet python example 0.1",
            status=self.gw.DeviceStatus(stores=[self.store_status()]),
            # DEV-SESSION-1: the Android it behaves as (its rules are the newest Android's).
            api_level=API_LEVEL,
            maker_profile="aosp",
        )
        await self.send(self.gw.DeviceMessage(hello=hello))
        call = stub.Session(self.requests(self.outbound))
        established = False
        try:
            async for message in call:
                established = True
                kind = message.WhichOneof("body")
                if kind == "challenge":
                    # DEV-SESSION-4: the proof answers the challenge before anything else goes.
                    await self.send(self.proof_message(message.challenge.nonce))
                    token = self.current_token()
                    if token is not None:
                        await self.send(self.escrow_message(token))
                elif kind == "key_update":
                    await self.apply_key_update(message.key_update)
                elif kind == "policy":
                    await self.apply_policy(message.policy)
                elif kind == "command":
                    await self.run_command(message.command)
        finally:
            await self.outbound.put(None)
        return established

    def proof_message(self, nonce):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.state["device_key"]))
        signed = (
            b"droidfleet.v1 session proof\0"
            + nonce
            + self.ca_fingerprint
            + self.state["device_id"].encode()
        )
        proof = self.gw.SessionProof(signature=key.sign(signed))
        return self.gw.DeviceMessage(proof=proof)

    # -- the control plane's signing key (DEV-KEY-1, DEV-KEY-2)

    def trusted_key_id(self):
        """The id of the key this device trusts: the first 8 bytes of its SHA-256 (CP-KEY-1)."""
        return hashlib.sha256(bytes.fromhex(self.state["public_key"])).digest()[:8]

    async def apply_key_update(self, signed):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from google.protobuf.message import DecodeError

        # DEV-KEY-2: only the key the device trusts can name its successor. Updates signed by
        # other (earlier) keys come on every session after a rotation and are ignored.
        if signed.key_id != self.trusted_key_id():
            return
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.state["public_key"]))
        try:
            key.verify(signed.signature, b"droidfleet.v1 key\0" + signed.body)
            body = self.gw.KeyUpdateBody.FromString(signed.body)
        except (InvalidSignature, DecodeError):
            log("refused a key update that does not verify or decode")
            return
        if body.device_id != self.state["device_id"] or len(body.public_key) != 32:
            log("refused a key update for another device or with a malformed key")
            return
        self.state["public_key"] = body.public_key.hex()
        # Persisted before the next message, which the new key may sign, is read.
        self.persist()
        log("following the control plane's new signing key")

    async def apply_policy(self, signed):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from google.protobuf.message import DecodeError

        pb = self.pb
        try:
            body = self.gw.PolicyBody.FromString(signed.body)
        except DecodeError:
            body = None

        async def refuse(code, reason):
            # DEV-POLICY-2/3: the store keeps its policy; the labels come from the body if any.
            refusal = self.gw.PolicyRefusal(
                scope=body.scope if body is not None else 0,
                version=body.version if body is not None else 0,
                error_code=code,
                reason=reason,
            )
            await self.send(self.gw.DeviceMessage(policy_refusal=refusal))

        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.state["public_key"]))
        if signed.key_id != self.trusted_key_id():
            # DEV-KEY-1: not the key this device trusts.
            await refuse(pb.ERROR_CODE_BAD_SIGNATURE, "the policy's key id is not the trusted key's")
            return
        try:
            # DEV-POLICY-2: the policy prefix, then the exact bytes received.
            key.verify(signed.signature, b"droidfleet.v1 policy\0" + signed.body)
        except InvalidSignature:
            await refuse(pb.ERROR_CODE_BAD_SIGNATURE, "the policy signature does not verify")
            return
        if body is None or body.scope == pb.CREDENTIAL_SCOPE_UNSPECIFIED:
            await refuse(pb.ERROR_CODE_MALFORMED_COMMAND, "the body is not a policy this device knows")
            return
        if body.device_id != self.state["device_id"]:
            await refuse(pb.ERROR_CODE_WRONG_DEVICE, "the policy is for another device")
            return
        if body.scope != pb.CREDENTIAL_SCOPE_DEVICE:
            await refuse(pb.ERROR_CODE_STORE_MISSING, "this device has no work profile")
            return
        policy = body.policy.SerializeToString().hex() if body.HasField("policy") else None
        applied = self.store.get("policy_version")
        if applied is not None and (
            body.version < applied or (body.version == applied and policy != self.store["policy"])
        ):
            await refuse(pb.ERROR_CODE_REPLAYED, f"policy version {body.version} is not newer than {applied}")
            return
        # DEV-POLICY-1: the whole policy of the store; unset removes it.
        self.store["policy"] = policy
        self.store["policy_version"] = body.version
        self.persist()

    # -- commands (DEV-CMD-*, DEV-ACK-1, DEV-RESET-*)

    async def run_command(self, signed):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from google.protobuf.message import DecodeError

        pb = self.pb
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.state["public_key"]))
        try:
            # DEV-CMD-1: the exact bytes received, never a re-encoding; DEV-KEY-1: under the id
            # of the key this device trusts.
            key.verify(signed.signature, signed.body)
            verified = signed.key_id == self.trusted_key_id()
        except InvalidSignature:
            verified = False
        try:
            body = self.gw.CommandBody.FromString(signed.body)
        except DecodeError:
            body = None
        if not verified:
            # DEV-CMD-2: not run, not acknowledged, not recorded; labelled with the body's id.
            if body is not None and body.command_id:
                await self.send(self.gw.DeviceMessage(result=self.result(body.command_id, pb.ERROR_CODE_BAD_SIGNATURE, "the signature does not verify")))
            return
        if body is None or not body.command_id:
            log("ignored a signed body that names no command")
            return
        if body.device_id != self.state["device_id"]:
            await self.send(self.gw.DeviceMessage(result=self.result(body.command_id, pb.ERROR_CODE_WRONG_DEVICE, "the command is for another device")))
            return
        kind = body.WhichOneof("kind")
        if kind == "cancel":
            await self.cancel(body)
            return
        scope = getattr(body, kind).scope if kind else 0
        if kind is None or scope == pb.CREDENTIAL_SCOPE_UNSPECIFIED:
            await self.send(self.gw.DeviceMessage(result=self.result(body.command_id, pb.ERROR_CODE_MALFORMED_COMMAND, "the body is not a command this device knows")))
            return
        await self.send(self.gw.DeviceMessage(ack=self.gw.CommandAck(command_id=body.command_id)))
        recorded = self.state["commands"].get(body.command_id)
        if recorded is not None:
            # DEV-CMD-7: the recorded answer, unchanged.
            await self.send(self.gw.DeviceMessage(result=self.gw.CommandResult.FromString(bytes.fromhex(recorded))))
            return
        highest = self.state["highest_sequence"]
        if highest is not None and body.sequence <= highest:
            await self.send(self.gw.DeviceMessage(result=self.result(body.command_id, pb.ERROR_CODE_REPLAYED, f"sequence {body.sequence} is not above {highest}")))
            return
        reports = []
        if now_ms() > body.not_after_ms:
            result = self.result(body.command_id, pb.ERROR_CODE_EXPIRED, "the command expired before it could run")
        elif kind == "reset_passcode":
            result, reports = self.reset(body.command_id, body.reset_passcode)
        else:
            result, reports = self.lock(body.command_id, body.remote_lock)
        self.state["highest_sequence"] = body.sequence
        self.state["commands"][body.command_id] = result.SerializeToString().hex()
        self.persist()
        # DEV-RESET-3: what the command changed, then its result.
        for report in reports:
            await self.send(report)
        await self.send(self.gw.DeviceMessage(result=result))
        log(f"command {body.command_id}: {'done' if result.success else pb.ErrorCode.Name(result.error_code)}")

    async def cancel(self, body):
        """DEV-CANCEL-1, the refusal only (capabilities.json does not declare cancel): a cancel of
        a command already answered is refused ALREADY_ANSWERED and that answer repeated. Accepting
        one is not implemented, so any other cancel is answered as a kind this device does not
        know (DEV-CMD-4); the control plane then sends the command itself again."""
        pb = self.pb
        recorded = self.state["commands"].get(body.cancel.command_id)
        if recorded is None:
            await self.send(self.gw.DeviceMessage(result=self.result(body.command_id, pb.ERROR_CODE_MALFORMED_COMMAND, "this device does not accept cancels")))
            return
        await self.send(self.gw.DeviceMessage(ack=self.gw.CommandAck(command_id=body.command_id)))
        await self.send(self.gw.DeviceMessage(result=self.result(body.command_id, pb.ERROR_CODE_ALREADY_ANSWERED, "the command was already answered")))
        await self.send(self.gw.DeviceMessage(ack=self.gw.CommandAck(command_id=body.cancel.command_id)))
        await self.send(self.gw.DeviceMessage(result=self.gw.CommandResult.FromString(bytes.fromhex(recorded))))

    def reset(self, command_id, reset):
        pb = self.pb
        if reset.scope != pb.CREDENTIAL_SCOPE_DEVICE:
            return self.result(command_id, pb.ERROR_CODE_STORE_MISSING, "this device has no work profile"), []
        if self.store["token"] is None:
            if self.pending_token is not None:
                return self.result(command_id, pb.ERROR_CODE_TOKEN_NOT_ACTIVE, "the token is pending"), []
            return self.result(command_id, pb.ERROR_CODE_TOKEN_MISSING, "the store has no token"), []
        if not hmac.compare_digest(bytes.fromhex(self.store["token"]), reset.escrow_token):
            return self.result(command_id, pb.ERROR_CODE_TOKEN_MISMATCH, "the token is not the store's"), []
        violation = policy_violation(self.policy(), reset.new_passcode, pb)
        if violation is not None:
            return self.result(command_id, pb.ERROR_CODE_PASSCODE_POLICY_VIOLATION, violation), []
        flags = set(reset.flags)
        self.store["passcode_sha256"] = hashlib.sha256(reset.new_passcode.encode()).hexdigest()
        if self.gw.RESET_FLAG_REQUIRE_ENTRY in flags:
            self.store["require_entry"] = command_id
        if self.gw.RESET_FLAG_REQUIRE_ENTRY in flags or self.gw.RESET_FLAG_LOCK_NOW in flags:
            self.store["locked"] = True
        # The management app rotates the used token; with a passcode now set it is pending.
        rotated = self.new_token()
        return self.result(command_id), [self.escrow_message(rotated), self.status_message()]

    def lock(self, command_id, lock):
        pb = self.pb
        if lock.scope != pb.CREDENTIAL_SCOPE_DEVICE:
            return self.result(command_id, pb.ERROR_CODE_STORE_MISSING, "this device has no work profile"), []
        # A store without a passcode has nothing a lock could protect (DEV-LOCK-1).
        if self.store["passcode_sha256"] is None:
            return self.result(command_id, pb.ERROR_CODE_NO_PASSCODE, "the store has no passcode to lock"), []
        if not self.store["locked"]:
            self.store["locked"] = True
            return self.result(command_id), [self.status_message()]
        return self.result(command_id), []

    # -- the loop (DEV-SESSION-3)

    async def run(self):
        import grpc

        if self.args.gateway.startswith("https://"):
            # TLS: the control plane's certificate must chain to its CA (its tls/ca.pem), the
            # only root this channel trusts.
            if not self.args.ca_file:
                sys.exit("an https:// gateway needs --ca-file (the control plane's tls/ca.pem)")
            import ssl

            with open(self.args.ca_file, "rb") as file:
                ca_pem = file.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
            self.ca_fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(ca_pem.decode())).digest()
            channel = grpc.aio.secure_channel(self.args.gateway.removeprefix("https://"), credentials)
        else:
            # Plaintext: only the conformance kit on loopback serves it.
            channel = grpc.aio.insecure_channel(self.args.gateway.removeprefix("http://"))
        backoff = 0.1
        async with channel:
            while True:
                established = False
                try:
                    if self.state["device_id"] is None:
                        await self.enroll(channel)
                    established = await self.session(channel)
                    log("session ended")
                except grpc.aio.AioRpcError as error:
                    log(f"session failed: {error.code().name}")
                if established:
                    backoff = 0.1
                await asyncio.sleep(backoff + random.uniform(0, 0.1))
                backoff = min(backoff * 2, 5.0)


def main():
    parser = argparse.ArgumentParser(description="A droidfleet.v1 COSU device in Python")
    parser.add_argument("--gateway", help="the control plane's gateway, such as 127.0.0.1:7400")
    parser.add_argument("--enrollment-token", help="the token to enroll with")
    parser.add_argument("--ca-file", help="with an https:// gateway: the control plane's CA certificate (PEM)")
    parser.add_argument("--state-dir", default="python-device-state", help="where the device keeps its state")
    parser.add_argument("--name", default="python-kiosk", help="the display name to enroll with")
    parser.add_argument("--generate-only", action="store_true", help="generate the stubs and exit")
    args = parser.parse_args()
    generate_stubs()
    if args.generate_only:
        return
    if not args.gateway or not args.enrollment_token:
        parser.error("--gateway and --enrollment-token are required")
    sys.path.insert(0, str(GENERATED))
    from droidfleet.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

    device = Device(args, (common_pb2, gateway_pb2, gateway_pb2_grpc))
    try:
        asyncio.run(device.run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
