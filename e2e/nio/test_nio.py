"""matrix-nio (Debian's python3-matrix-nio) against a running Porthole at $PORTHOLE_URL.

Everything goes through nio's own client API, so nio's response schemas judge every answer
(nio turns a response it cannot validate into an error object, and an event it cannot
validate into a BadEvent). nio talks /_matrix/client/r0/.

Run: PORTHOLE_URL=http://127.0.0.1:8008 /usr/bin/python3 -m unittest -v test_nio
"""

import asyncio
import json
import os
import unittest
import uuid

import nio
from nio import Api
from nio.responses import WhoamiResponse

URL = os.environ.get("PORTHOLE_URL", "http://127.0.0.1:8008")
TIMEOUT = 20  # seconds for any one wait in these tests


def uniq(prefix):
    return prefix + uuid.uuid4().hex[:8]


class NioTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.clients = []

    async def asyncTearDown(self):
        for c in self.clients:
            await c.close()

    def client(self, user=""):
        c = nio.AsyncClient(URL, user)
        self.clients.append(c)
        return c

    def ok(self, resp, kind):
        """Fails unless nio parsed the answer as the success type (not an error type)."""
        self.assertIsInstance(resp, kind, f"{type(resp).__name__}: {resp}")
        return resp

    async def registered(self, name=None, password="pw-nio-secret"):
        name = name or uniq("nio")
        c = self.client()
        self.ok(await c.register(name, password, device_name="nio test"), nio.RegisterResponse)
        return c, name, password

    async def guest(self):
        """A guest, registered through nio's own request and response machinery."""
        c = self.client()
        path = Api._build_path(["register"], {"kind": "guest"})
        resp = self.ok(await c._send(nio.RegisterResponse, "POST", path, Api.to_json({})), nio.RegisterResponse)
        self.assertTrue(resp.user_id.startswith("@"))
        return c

    async def public_room(self, c, history="world_readable", guests="can_join"):
        resp = await c.room_create(
            visibility=nio.RoomVisibility.public,
            name="nio room",
            topic="for nio",
            preset=nio.RoomPreset.public_chat,
            initial_state=[
                {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": history}},
                {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": guests}},
            ],
        )
        return self.ok(resp, nio.RoomCreateResponse).room_id

    async def send_text(self, c, room_id, body):
        resp = await c.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
        return self.ok(resp, nio.RoomSendResponse).event_id

    async def test_register_login_whoami(self):
        c, name, password = await self.registered()
        who = self.ok(await c.whoami(), WhoamiResponse)
        self.assertEqual(who.user_id, c.user_id)

        other = self.client("@" + name + ":" + c.user_id.split(":", 1)[1])
        login = self.ok(await other.login(password, device_name="second device"), nio.LoginResponse)
        self.assertEqual(login.user_id, c.user_id)
        self.assertNotEqual(login.device_id, c.device_id)
        self.assertEqual(self.ok(await other.whoami(), WhoamiResponse).user_id, c.user_id)

        bad = self.client(c.user_id)
        self.assertIsInstance(await bad.login("wrong password"), nio.LoginError)

        devices = self.ok(await c.devices(), nio.DevicesResponse)
        self.assertEqual(sorted(d.id for d in devices.devices), sorted([c.device_id, login.device_id]))

    async def test_sync_after_join_and_presence(self):
        """The reported bug: a second user joins, and nio's sync must not choke on presence."""
        alice, _, _ = await self.registered()
        bob, _, _ = await self.registered()
        room = await self.public_room(alice)
        self.ok(await bob.join(room), nio.JoinResponse)
        for c in (alice, bob):
            sync = self.ok(await c.sync(timeout=0, full_state=True), nio.SyncResponse)
            self.assertIn(room, sync.rooms.join)
            self.assertIn(room, c.rooms)
            bad = [e for e in sync.presence_events if isinstance(e, nio.UnknownBadEvent)]
            self.assertEqual(bad, [], "presence events nio could not parse")
            for info in sync.rooms.join.values():
                self.assertEqual([e for e in info.timeline.events if isinstance(e, nio.BadEvent)], [])
        self.assertEqual(set(alice.rooms[room].users), {alice.user_id, bob.user_id})

        self.ok(await alice.set_presence("online", "writing tests"), nio.PresenceSetResponse)
        got = self.ok(await bob.get_presence(alice.user_id), nio.PresenceGetResponse)
        self.assertEqual(got.presence, "online")
        self.assertEqual(got.status_msg, "writing tests")

    def no_bad_events(self, sync):
        """Every event of a sync response parsed: nio drops what breaks its schemas."""
        groups = [("presence", sync.presence_events), ("account_data", sync.account_data_events)]
        for rid, info in sync.rooms.join.items():
            groups += [(rid + " timeline", info.timeline.events), (rid + " state", info.state),
                       (rid + " ephemeral", info.ephemeral), (rid + " account_data", info.account_data)]
        for rid, info in sync.rooms.leave.items():
            groups += [(rid + " left timeline", info.timeline.events), (rid + " left state", info.state)]
        for rid, info in sync.rooms.invite.items():
            groups += [(rid + " invite_state", info.invite_state)]
        for name, events in groups:
            bad = [e for e in events if isinstance(e, (nio.BadEvent, nio.UnknownBadEvent))]
            self.assertEqual(bad, [], name)

    async def test_invites_leaves_redactions_and_ephemera_parse(self):
        alice, _, _ = await self.registered()
        bob, _, _ = await self.registered()
        room = await self.public_room(alice)
        self.ok(await bob.join(room), nio.JoinResponse)
        first = await self.send_text(alice, room, "to be redacted")
        second = await self.send_text(bob, room, "kept")
        self.ok(await alice.room_redact(room, first, reason="oops"), nio.RoomRedactResponse)
        self.ok(await alice.room_typing(room, True, timeout=30000), nio.RoomTypingResponse)
        self.ok(await bob.room_read_markers(room, second, second), nio.RoomReadMarkersResponse)
        private = self.ok(await alice.room_create(name="private", invite=[bob.user_id]), nio.RoomCreateResponse).room_id
        gone = await self.public_room(alice)
        self.ok(await bob.join(gone), nio.JoinResponse)

        sync = self.ok(await bob.sync(timeout=0, full_state=True), nio.SyncResponse)
        self.no_bad_events(sync)
        self.assertIn(private, sync.rooms.invite)
        self.assertIn(private, bob.invited_rooms)
        timeline = sync.rooms.join[room].timeline.events
        redacted = [e for e in timeline if e.event_id == first]
        self.assertEqual(len(redacted), 1)
        self.assertIsInstance(redacted[0], nio.RedactedEvent)
        types = {type(e).__name__ for e in sync.rooms.join[room].ephemeral}
        self.assertIn("TypingNoticeEvent", types)
        self.assertIn("ReceiptEvent", types)
        self.assertEqual(bob.rooms[room].typing_users, [alice.user_id])

        # Leaving shows in the next sync's leave section, with the leave in its timeline.
        self.ok(await bob.room_leave(gone), nio.RoomLeaveResponse)
        left = self.ok(await bob.sync(timeout=0), nio.SyncResponse)
        self.no_bad_events(left)
        self.assertIn(gone, left.rooms.leave)
        leaves = [e for e in left.rooms.leave[gone].timeline.events if isinstance(e, nio.RoomMemberEvent)]
        self.assertEqual([(e.state_key, e.membership) for e in leaves], [(bob.user_id, "leave")])

        page = self.ok(await bob.room_messages(room, "", limit=20), nio.RoomMessagesResponse)
        self.assertEqual([e for e in page.chunk if isinstance(e, nio.BadEvent)], [])
        self.assertIn(first, [e.event_id for e in page.chunk if isinstance(e, nio.RedactedEvent)])
        ctx = self.ok(await bob.room_context(room, second, limit=2), nio.RoomContextResponse)
        self.assertEqual(ctx.event.event_id, second)

        members = self.ok(await bob.joined_members(room), nio.JoinedMembersResponse)
        self.assertEqual({m.user_id for m in members.members}, {alice.user_id, bob.user_id})
        self.ok(await bob.get_profile(alice.user_id), nio.ProfileGetResponse)
        self.ok(await bob.set_displayname("Bob"), nio.ProfileSetDisplayNameResponse)
        self.assertEqual(self.ok(await bob.get_displayname(), nio.ProfileGetDisplayNameResponse).displayname, "Bob")

    async def test_sync_loop_gets_messages_in_order_once(self):
        alice, _, _ = await self.registered()
        bob, _, _ = await self.registered()
        room = await self.public_room(alice)
        self.ok(await bob.join(room), nio.JoinResponse)
        self.ok(await bob.sync(timeout=0), nio.SyncResponse)  # the loop then starts from now

        want = [f"msg {i}" for i in range(8)]
        seen = []
        done = asyncio.Event()

        async def on_message(r, event):
            if r.room_id == room:
                seen.append(event.body)
                if len(seen) >= len(want):
                    done.set()

        bob.add_event_callback(on_message, nio.RoomMessageText)
        loop = asyncio.create_task(bob.sync_forever(timeout=5000, since=bob.next_batch))
        try:
            for body in want:
                await self.send_text(alice, room, body)
            await asyncio.wait_for(done.wait(), TIMEOUT)
            # A few more long-polls: nothing may arrive twice.
            for _ in range(3):
                self.ok(await alice.sync(timeout=0), nio.SyncResponse)
            await asyncio.sleep(0.5)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
        self.assertEqual(seen, want)

    async def test_messages_backwards_and_forwards(self):
        alice, _, _ = await self.registered()
        room = await self.public_room(alice)
        want = [f"page {i}" for i in range(11)]
        for body in want:
            await self.send_text(alice, room, body)
        sync = self.ok(await alice.sync(timeout=0), nio.SyncResponse)
        token = sync.rooms.join[room].timeline.prev_batch
        self.assertTrue(token)

        def texts(chunk):
            return [e.body for e in chunk if isinstance(e, nio.RoomMessageText)]

        # Backwards from the end, three at a time, chaining end → from.
        back, start = [], ""
        for _ in range(30):
            page = self.ok(await alice.room_messages(room, start, limit=3), nio.RoomMessagesResponse)
            self.assertEqual([e for e in page.chunk if isinstance(e, nio.BadEvent)], [])
            back.extend(texts(page.chunk))
            if not page.chunk or not page.end:
                break
            start = page.end
        self.assertEqual(list(reversed(back)), want)
        earliest = start

        # Forwards from the earliest token to the end.
        fwd, start = [], earliest
        for _ in range(30):
            page = self.ok(
                await alice.room_messages(room, start, direction=nio.MessageDirection.front, limit=4),
                nio.RoomMessagesResponse,
            )
            fwd.extend(texts(page.chunk))
            if not page.chunk or not page.end:
                break
            start = page.end
        self.assertEqual(fwd, want)

        # The sync's prev_batch continues where its timeline starts, with nothing lost or doubled.
        page = self.ok(await alice.room_messages(room, token, limit=100), nio.RoomMessagesResponse)
        older = list(reversed(texts(page.chunk)))
        self.assertEqual(older + texts(sync.rooms.join[room].timeline.events), want)

    async def test_state_read_back(self):
        alice, _, _ = await self.registered()
        room = await self.public_room(alice)
        self.ok(await alice.room_put_state(room, "m.room.topic", {"topic": "changed"}), nio.RoomPutStateResponse)
        state = self.ok(await alice.room_get_state(room), nio.RoomGetStateResponse)
        by_type = {(e["type"], e.get("state_key")): e for e in state.events}
        self.assertEqual(by_type[("m.room.history_visibility", "")]["content"]["history_visibility"], "world_readable")
        self.assertEqual(by_type[("m.room.topic", "")]["content"]["topic"], "changed")
        self.assertEqual(by_type[("m.room.member", alice.user_id)]["content"]["membership"], "join")
        one = self.ok(await alice.room_get_state_event(room, "m.room.name"), nio.RoomGetStateEventResponse)
        self.assertEqual(one.content["name"], "nio room")
        missing = await alice.room_get_state_event(room, "m.room.nothing")
        self.assertIsInstance(missing, nio.RoomGetStateEventError)
        self.assertEqual(missing.status_code, "M_NOT_FOUND")

    async def test_guest_reads_world_readable_room_without_joining(self):
        alice, _, _ = await self.registered()
        room = await self.public_room(alice)
        await self.send_text(alice, room, "for everyone")
        g = await self.guest()
        page = self.ok(await g.room_messages(room, ""), nio.RoomMessagesResponse)  # nio sends from=
        self.assertIn("for everyone", [e.body for e in page.chunk if isinstance(e, nio.RoomMessageText)])
        state = self.ok(await g.room_get_state(room), nio.RoomGetStateResponse)
        self.assertIn("m.room.create", [e["type"] for e in state.events])
        joined = self.ok(await g.joined_rooms(), nio.JoinedRoomsResponse)
        self.assertNotIn(room, joined.rooms)

    async def test_guest_refused_shared_history_room(self):
        alice, _, _ = await self.registered()
        room = await self.public_room(alice, history="shared", guests="can_join")
        await self.send_text(alice, room, "members only")
        g = await self.guest()
        page = await g.room_messages(room, "")
        self.assertIsInstance(page, nio.RoomMessagesError)
        self.assertEqual(page.status_code, "M_FORBIDDEN")
        state = await g.room_get_state(room)
        self.assertIsInstance(state, nio.RoomGetStateError)

    async def test_guest_joins_can_join_room_and_posts(self):
        alice, _, _ = await self.registered()
        room = await self.public_room(alice, history="shared", guests="can_join")
        g = await self.guest()
        self.ok(await g.join(room), nio.JoinResponse)
        event_id = await self.send_text(g, room, "hello from a guest")
        sync = self.ok(await alice.sync(timeout=0), nio.SyncResponse)
        timeline = sync.rooms.join[room].timeline.events
        self.assertIn(event_id, [e.event_id for e in timeline])
        mine = [e for e in timeline if e.event_id == event_id][0]
        self.assertEqual((mine.sender, mine.body), (g.user_id, "hello from a guest"))

        closed = await self.public_room(alice, history="shared", guests="forbidden")
        refused = await g.join(closed)
        self.assertIsInstance(refused, nio.JoinError)
        self.assertEqual(refused.status_code, "M_FORBIDDEN")


if __name__ == "__main__":
    unittest.main()
