// An independent Matrix client for interop tests: matrix-js-sdk with its Rust crypto (the
// crypto stack of Element Web), driven over stdin/stdout with one JSON object per line.
//
//   node tests/js/client.mjs --homeserver URL --user @nurse1:localhost --password PW [--auto-join]
//
// stdout (events):  ready, invite, joined, room_state, message, undecryptable, error, result
//                   (messages from other users only, once each, after decryption; a message
//                   carries the whole decrypted content, e.g. content.file for an attachment)
// stdin (commands): {"id", "cmd": "send" | "join" | "create_room" | "read" | "invite" |
//                    "set_state" | "send_file" | "fetch_file" | "set_isolation_mode" |
//                    "delay_room_keys" | "stop", ...}
//                   a failed command's result carries the Matrix errcode and error body
//   {"cmd": "send", "roomId", "body"} -> result {eventId, sessionId}: sessionId is the megolm
//       session the message was encrypted with (null in an unencrypted room)
//
// Key sharing (the crypto's device isolation mode, MSC4153; applies from the next send):
//   {"cmd": "set_isolation_mode", "mode": "all" | "only_signed"}  -> result {mode}
//       "all" (the default, AllDevicesIsolationMode(false)): room keys go to every device in
//       the room, verified or not; messages from any device are decrypted.
//       "only_signed" (OnlySignedDevicesIsolationMode, Element's "exclude insecure devices"):
//       room keys go only to devices cross-signed by their owner (others get an m.unverified
//       withheld notice), and messages from devices that are not cross-signed (a user
//       without a cross-signing identity included) are NOT decrypted: they are reported as
//       undecryptable (reason UNSIGNED_SENDER_DEVICE). The SDK cannot send in this mode
//       without cross-signing, so this first sets it up for the account (new keys, signing
//       this device, unless this device holds them already).
//
// Late room keys (a to-device message that lags behind the room event, as over a slow
// federation link):
//   {"cmd": "delay_room_keys", "ms": N}  -> result {ms}
//       from now on each encrypted to-device message (PUT /sendToDevice/m.room.encrypted,
//       which carries the room keys) is answered 200 {} at once, so the SDK goes on and
//       sends the room event, and really reaches the homeserver only N ms later; 0 stops
//       delaying (messages already held still go when their time comes).
//
// Attachments (the spec's "Sending encrypted attachments", with matrix-encrypt-attachment as
// Element Web does: AES-256-CTR, JWK key, iv, sha256 of the ciphertext):
//   {"cmd": "send_file", "roomId", "name", "mimetype", "dataBase64", "msgtype"?}
//       encrypts the bytes, uploads the ciphertext (application/octet-stream, no filename)
//       and sends m.room.message {msgtype: m.image for image/* else m.file, body: name,
//       info: {mimetype, size}, file: {url: mxc, key, iv, hashes: {sha256}, v: "v2"}}
//       -> result {eventId, mxc}
//   {"cmd": "fetch_file", "file": EncryptedFile}   (a received message's content.file)
//       downloads the ciphertext (authenticated media, /_matrix/client/v1/media/download),
//       checks its sha256 and decrypts it -> result {dataBase64, size}
//   {"cmd": "fetch_file", "url": "mxc://..."}      downloads as is -> {dataBase64, size}
//
// stdout carries only the protocol; everything else (our logs, the SDK's) goes to stderr.

import { parseArgs } from "node:util";
import { createInterface } from "node:readline";
import { decryptAttachment, encryptAttachment } from "matrix-encrypt-attachment";

// --- Node 20 support and stdout hygiene, before the SDK is loaded -------------------------

// matrix-js-sdk 43 targets Node 22 and uses Promise.withResolvers.
Promise.withResolvers ??= () => {
    let a, b;
    const p = new Promise((x, y) => {
        a = x;
        b = y;
    });
    return { promise: p, resolve: a, reject: b };
};

// The SDK logs through loglevel, which binds console methods when a logger is created, and
// its child loggers force level DEBUG. So silence debug/info at the console itself, and keep
// console.log off stdout. Set JSCLIENT_DEBUG=1 to see everything on stderr.
const verbose = !!process.env.JSCLIENT_DEBUG;
const toStderr = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
const quiet = () => {};
console.log = verbose ? toStderr : quiet;
console.info = verbose ? toStderr : quiet;
console.debug = verbose ? toStderr : quiet;
console.trace = verbose ? toStderr : quiet;
console.warn = toStderr;
console.error = toStderr;

// Static imports are hoisted above the polyfill, so the SDK is imported dynamically.
await import("fake-indexeddb/auto");
const sdk = await import("matrix-js-sdk");
const { AllDevicesIsolationMode, OnlySignedDevicesIsolationMode } = await import(
    "matrix-js-sdk/lib/crypto-api/index.js"
);
const { ClientEvent, RoomEvent, RoomMemberEvent, MatrixEventEvent, EventType, MatrixError } = sdk;

// --- protocol ------------------------------------------------------------------------------

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function log(...args) {
    process.stderr.write(`[jsclient ${userIdArg}] ${args.join(" ")}\n`);
}

const { values: args } = parseArgs({
    options: {
        homeserver: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        "auto-join": { type: "boolean", default: false },
    },
});
const userIdArg = args.user;
if (!args.homeserver || !args.user || !args.password) {
    emit({ event: "error", message: "usage: --homeserver URL --user @u:server --password PW [--auto-join]" });
    process.exit(2);
}

// A key may arrive after the event (to-device messages race the room timeline), and the
// Rust crypto retries then; only give up after this long.
const UNDECRYPTABLE_AFTER_MS = 20_000;

process.on("unhandledRejection", (err) => {
    emit({ event: "error", message: `unhandled rejection: ${err?.stack ?? err}` });
});

// --- late room keys --------------------------------------------------------------------

let toDeviceDelayMs = 0;

// The SDK's fetch: with a delay set, an encrypted to-device message is acknowledged at once
// and sent for real later (see "delay_room_keys").
async function lateKeysFetch(resource, init) {
    const url = String(resource);
    const delay = toDeviceDelayMs;
    if (delay > 0 && init?.method === "PUT" && url.includes("/sendToDevice/m.room.encrypted/")) {
        const { signal: _ignored, ...later } = init; // the SDK's abort signal is done with it
        setTimeout(() => {
            fetch(url, later)
                .then(async (response) => {
                    if (!response.ok) log("held to-device message refused:", response.status, await response.text());
                })
                .catch((err) => emit({ event: "error", message: `held to-device message: ${err?.message ?? err}` }));
        }, delay);
        log(`holding an encrypted to-device message for ${delay} ms`);
        return new Response("{}", { status: 200, headers: { "Content-Type": "application/json" } });
    }
    return fetch(resource, init);
}

// --- login and crypto --------------------------------------------------------------------

let client, me, crypto;
try {
    const login = await sdk.createClient({ baseUrl: args.homeserver }).loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: args.user },
        password: args.password,
        initial_device_display_name: "wijkbrug js-sdk test client",
    });
    me = login.user_id;
    client = sdk.createClient({
        baseUrl: args.homeserver,
        userId: me,
        accessToken: login.access_token,
        deviceId: login.device_id,
        fetchFn: lateKeysFetch,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    crypto = client.getCrypto();
    // As Element does by default: share keys with unverified devices, don't fail on them.
    crypto.globalBlacklistUnverifiedDevices = false;
    crypto.setDeviceIsolationMode(new AllDevicesIsolationMode(false));
} catch (err) {
    emit({ event: "error", message: `login/crypto setup failed: ${err?.message ?? err}` });
    process.exit(1);
}

// --- room events ---------------------------------------------------------------------------

const seenEvents = new Set();
const seenInvites = new Set();
const reportedRooms = new Set();

async function onTimelineEvent(event, room) {
    const eventId = event.getId();
    if (!eventId || !eventId.startsWith("$") || event.getSender() === me) return;
    if (event.getType() !== EventType.RoomMessage && !event.isEncrypted()) return;
    if (seenEvents.has(eventId)) return;
    seenEvents.add(eventId);

    await client.decryptEventIfNeeded(event);
    if (event.isDecryptionFailure()) {
        const settled = await new Promise((resolve) => {
            const timer = setTimeout(() => resolve(false), UNDECRYPTABLE_AFTER_MS);
            const retry = () => {
                if (event.isDecryptionFailure()) return;
                clearTimeout(timer);
                event.off(MatrixEventEvent.Decrypted, retry);
                resolve(true);
            };
            event.on(MatrixEventEvent.Decrypted, retry);
        });
        if (!settled) {
            emit({
                event: "undecryptable",
                roomId: room?.roomId ?? event.getRoomId(),
                eventId,
                sender: event.getSender(),
                reason: String(event.decryptionFailureReason),
            });
            return;
        }
    }
    if (event.getType() !== EventType.RoomMessage) return; // e.g. an encrypted reaction
    const content = event.getContent();
    emit({
        event: "message",
        roomId: event.getRoomId(),
        eventId,
        sender: event.getSender(),
        type: event.getType(),
        encrypted: event.isEncrypted(),
        body: content.body ?? null,
        content,
    });
}

client.on(RoomEvent.Timeline, (event, room) => {
    onTimelineEvent(event, room).catch((err) =>
        emit({ event: "error", message: `handling ${event.getId()}: ${err?.stack ?? err}` }),
    );
});

async function join(roomId) {
    await client.joinRoom(roomId);
    emit({ event: "joined", roomId });
}

client.on(RoomMemberEvent.Membership, (event, member) => {
    if (member.userId !== me || member.membership !== "invite") return;
    if (seenInvites.has(member.roomId)) return;
    seenInvites.add(member.roomId);
    emit({ event: "invite", roomId: member.roomId, inviter: event.getSender() });
    if (args["auto-join"]) {
        join(member.roomId).catch((err) =>
            emit({ event: "error", message: `joining ${member.roomId}: ${err?.message ?? err}` }),
        );
    }
});

function stateContent(room, type) {
    return room.currentState.getStateEvents(type, "")?.getContent() ?? null;
}

// Report the settings of each room we are in once, after a whole sync batch has been
// applied (the membership event alone may arrive before the rest of the state).
function reportJoinedRooms() {
    for (const room of client.getRooms()) {
        if (room.getMyMembership() !== "join" || reportedRooms.has(room.roomId)) continue;
        reportedRooms.add(room.roomId);
        emit({
            event: "room_state",
            roomId: room.roomId,
            name: stateContent(room, EventType.RoomName)?.name ?? null,
            topic: stateContent(room, EventType.RoomTopic)?.topic ?? null,
            encryption: stateContent(room, EventType.RoomEncryption),
            historyVisibility: stateContent(room, EventType.RoomHistoryVisibility)?.history_visibility ?? null,
            joinRule: stateContent(room, EventType.RoomJoinRules)?.join_rule ?? null,
            guestAccess: stateContent(room, EventType.RoomGuestAccess)?.guest_access ?? null,
        });
    }
}

// --- start and wait for the first sync ---------------------------------------------------

const firstSync = Promise.withResolvers();
client.on(ClientEvent.Sync, (state, _prev, data) => {
    if (state === "PREPARED") firstSync.resolve();
    if (state === "ERROR") log("sync error:", data?.error?.message ?? "unknown");
    if (state === "PREPARED" || state === "SYNCING") reportJoinedRooms();
});
try {
    await client.startClient({ initialSyncLimit: 20 });
    await firstSync.promise;
    // "ready" promises that others can encrypt for us: our device keys are on the server.
    for (let attempt = 0; ; attempt++) {
        const devices = await crypto.getUserDeviceInfo([me], true);
        if (devices.get(me)?.has(client.getDeviceId())) break;
        if (attempt > 100) throw new Error("own device keys never appeared on the server");
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
} catch (err) {
    emit({ event: "error", message: `start failed: ${err?.message ?? err}` });
    process.exit(1);
}
emit({ event: "ready", userId: me, deviceId: client.getDeviceId() });

// --- commands ------------------------------------------------------------------------------

async function waitForRoom(roomId, members = []) {
    for (let i = 0; i < 300; i++) {
        const room = client.getRoom(roomId);
        const known = (userId) => ["invite", "join"].includes(room?.getMember(userId)?.membership);
        if (room?.getMyMembership() === "join" && members.every(known)) return room;
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`room ${roomId} not synced`);
}

// The bytes behind an mxc URI, from the authenticated media API (Synapse serves no other).
async function download(mxc) {
    const url = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    if (!url) throw new Error(`not a valid mxc URI: ${JSON.stringify(mxc)}`);
    const headers = { Authorization: `Bearer ${client.getAccessToken()}` };
    const response = await fetch(url, { headers });
    if (!response.ok) {
        const text = await response.text();
        let body;
        try {
            body = JSON.parse(text);
        } catch {
            body = { error: text.slice(0, 200) };
        }
        throw new MatrixError(body, response.status, url);
    }
    return Buffer.from(await response.arrayBuffer());
}

const commands = {
    async send({ roomId, body }) {
        await waitForRoom(roomId);
        const { event_id } = await client.sendMessage(roomId, { msgtype: "m.text", body });
        const sent = client.getRoom(roomId)?.findEventById(event_id);
        return { eventId: event_id, sessionId: sent?.getWireContent()?.session_id ?? null };
    },
    async delay_room_keys({ ms }) {
        if (!Number.isInteger(ms) || ms < 0) throw new Error("delay_room_keys needs ms, an integer >= 0");
        toDeviceDelayMs = ms;
        return { ms };
    },
    async set_isolation_mode({ mode }) {
        const modes = {
            all: () => new AllDevicesIsolationMode(false),
            only_signed: () => new OnlySignedDevicesIsolationMode(),
        };
        if (!Object.hasOwn(modes, mode)) {
            throw new Error(`set_isolation_mode: mode must be "all" or "only_signed", not ${JSON.stringify(mode)}`);
        }
        // Keys go only to cross-signed devices, and the Rust crypto refuses to send at all
        // from an account without cross-signing ("cross-signing is not set up on your
        // account"): set it up first, as Element makes its users do. A no-op when this
        // device already holds the keys; otherwise new keys (the password answers the
        // homeserver's user-interactive auth for replacing them).
        if (mode === "only_signed") {
            await crypto.bootstrapCrossSigning({
                authUploadDeviceSigningKeys: async (makeRequest) => {
                    const identifier = { type: "m.id.user", user: me };
                    await makeRequest({ type: "m.login.password", identifier, password: args.password });
                },
            });
        }
        crypto.setDeviceIsolationMode(modes[mode]());
        return { mode };
    },
    async join({ roomId }) {
        await join(roomId);
        return { roomId };
    },
    async create_room({ invite = [], encrypted = true, name, historyVisibility }) {
        const initial_state = [];
        if (encrypted) {
            const content = { algorithm: "m.megolm.v1.aes-sha2" };
            initial_state.push({ type: "m.room.encryption", state_key: "", content });
        }
        if (historyVisibility) {
            const content = { history_visibility: historyVisibility };
            initial_state.push({ type: "m.room.history_visibility", state_key: "", content });
        }
        const { room_id } = await client.createRoom({ preset: "private_chat", invite, name, initial_state });
        // Sending right away needs the room, its encryption state and the invites in the
        // local store: the SDK encrypts only for members it knows of at send time, and the
        // first sync showing the room may predate the invites.
        await waitForRoom(room_id, invite);
        return { roomId: room_id };
    },
    async read({ roomId, eventId }) {
        const event = client.getRoom(roomId)?.findEventById(eventId);
        if (event) {
            await client.sendReadReceipt(event);
        } else {
            const path = `/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(eventId)}`;
            await client.http.authedRequest("POST", path, undefined, {});
        }
        return {};
    },
    async invite({ roomId, userId }) {
        await client.invite(roomId, userId);
        return {};
    },
    async set_state({ roomId, type, stateKey = "", content }) {
        const { event_id } = await client.sendStateEvent(roomId, type, content, stateKey);
        return { eventId: event_id };
    },
    async send_file({ roomId, name, mimetype, dataBase64, msgtype }) {
        if (![name, mimetype, dataBase64].every((value) => typeof value === "string")) {
            throw new Error("send_file needs name, mimetype and dataBase64");
        }
        await waitForRoom(roomId);
        const plaintext = Buffer.from(dataBase64, "base64");
        const { data, info } = await encryptAttachment(plaintext);
        const { content_uri: mxc } = await client.uploadContent(Buffer.from(data), {
            type: "application/octet-stream",
            includeFilename: false,
        });
        const content = {
            msgtype: msgtype ?? (mimetype.startsWith("image/") ? "m.image" : "m.file"),
            body: name,
            info: { mimetype, size: plaintext.length },
            file: { url: mxc, ...info },
        };
        const { event_id } = await client.sendMessage(roomId, content);
        return { eventId: event_id, mxc };
    },
    async fetch_file({ file, url }) {
        let data;
        if (file !== undefined) {
            if (typeof file?.url !== "string") throw new Error("fetch_file: file.url is missing");
            // Throws on a missing key/iv/hash, an unknown version or algorithm, and a
            // ciphertext whose sha256 is not the one in the event.
            data = Buffer.from(await decryptAttachment(await download(file.url), file));
        } else if (typeof url === "string") {
            data = await download(url);
        } else {
            throw new Error("fetch_file needs file (an EncryptedFile) or url (an mxc URI)");
        }
        return { dataBase64: data.toString("base64"), size: data.length };
    },
    async stop() {
        return {};
    },
};

let stopping = false;
async function stop(code) {
    if (stopping) return;
    stopping = true;
    client.stopClient();
    // Let the last lines reach the reader before the process goes.
    process.stdout.write("", () => process.exit(code));
}

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
    if (!line.trim()) return;
    let command;
    try {
        command = JSON.parse(line);
    } catch (err) {
        emit({ event: "error", message: `bad command line: ${err.message}` });
        return;
    }
    const { id, cmd } = command;
    const handler = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
    if (!handler) {
        emit({ event: "result", id, ok: false, error: `unknown command ${cmd}` });
        return;
    }
    try {
        emit({ event: "result", id, ok: true, ...(await handler(command)) });
    } catch (err) {
        // A Matrix error's errcode and body (e.g. a homeserver module's reason) let tests
        // tell who refused.
        emit({
            event: "result",
            id,
            ok: false,
            error: err?.message ?? String(err),
            errcode: err?.errcode ?? null,
            data: err?.data ?? null,
        });
    }
    if (cmd === "stop") await stop(0);
});
lines.on("close", () => stop(0));
