"""Every Storage method, on both engines: SQLite (the default) and PostgreSQL (tests marked
`postgres`, on the real server at DARKROOM_TEST_POSTGRES_URL; a fresh database per test)."""

from __future__ import annotations

import asyncio

import pytest

from bot.storage.store import PERSON_TABLES, POSTGRES_SCHEMA, SCHEMA, Storage
from handlers.events import Address, MessageRef
from handlers.ports import ConsentRecord, Preferences
from tests.conftest import ENGINES, open_storage, storage_location

SECRET = b"s" * 32
ALICE, BOB = "pseudonym-alice-3f9a", "pseudonym-bob-77c1"
V1 = ConsentRecord("v1", "a" * 64, "en", 1_700_000_000)
V2 = ConsentRecord("v2", "b" * 64, "zh-hans", 1_700_000_100)


@pytest.fixture(params=ENGINES)
def place(request, tmp_path):
    """(engine, location): a SQLite file path, or the URL of a fresh PostgreSQL database."""
    return storage_location(request, tmp_path)


@pytest.fixture
async def storage(place):
    storage = await open_storage(place, SECRET)
    try:
        yield storage
    finally:
        await storage.close()


async def test_the_engine_is_the_one_asked_for(storage, place):
    assert storage.engine == place[0]


async def test_both_schemas_have_the_same_tables_columns_and_indexes():
    def names(ddl: str, kind: str) -> list[str]:
        return [line.split("EXISTS", 1)[1].split()[0] for line in ddl.splitlines() if line.startswith(f"CREATE {kind}")]

    def columns(ddl: str) -> list[str]:
        return [line.split()[0] for line in ddl.splitlines() if line.startswith("    ")]

    assert names(POSTGRES_SCHEMA, "TABLE") == names(SCHEMA, "TABLE")
    assert names(POSTGRES_SCHEMA, "INDEX") == names(SCHEMA, "INDEX")
    assert columns(POSTGRES_SCHEMA) == columns(SCHEMA)


async def test_tables_and_columns_as_the_database_reports_them(storage):
    assert await storage.tables() == sorted(
        ["callbacks_seen", "consent_history", "consents", "groups", "inflight", "preferences", "reply_refs"]
    )
    assert await storage.columns("preferences") == ["person", "style", "strength", "keep_colours"]
    assert await storage.columns("reply_refs") == ["id", "person", "sealed", "delete_at"]


async def test_consent_is_recorded_replaced_and_kept_in_history(storage):
    assert await storage.consent(ALICE) is None
    assert await storage.consent_history(ALICE) == []
    await storage.record_consent(ALICE, V2)
    await storage.record_consent(ALICE, V1)
    assert await storage.consent(ALICE) == V1
    assert await storage.consent_history(ALICE) == [V1, V2]  # ordered by time given
    assert await storage.consent(BOB) is None


async def test_preferences_default_then_stored_exactly(storage):
    assert await storage.preferences(ALICE) == Preferences()
    await storage.set_preferences(ALICE, Preferences("ink", 0.7, True))
    assert await storage.preferences(ALICE) == Preferences("ink", 0.7, True)  # 0.7, not 0.699999988
    await storage.set_preferences(ALICE, Preferences(None, 1.0, False))
    assert await storage.preferences(ALICE) == Preferences()
    assert await storage.preferences(BOB) == Preferences()


async def test_group_switch_defaults_on_and_is_deleted(storage):
    assert await storage.group_enabled("group-1")
    await storage.set_group_enabled("group-1", False)
    assert not await storage.group_enabled("group-1")
    await storage.set_group_enabled("group-1", True)
    assert await storage.group_enabled("group-1")
    await storage.set_group_enabled("group-2", False)
    assert await storage.delete_group("group-1") == 1
    assert await storage.delete_group("group-1") == 0
    assert [row[:3] for row in await storage.dump()] == [("groups", "group-2", 0)]


async def test_replies_are_sealed_due_in_order_and_forgotten(storage):
    chat = Address("telegram", "987654321")
    await storage.remember_reply(ALICE, MessageRef(chat, 42), delete_at=2_000)
    await storage.remember_reply(ALICE, MessageRef(chat, 41), delete_at=1_000)
    await storage.remember_reply(BOB, MessageRef(Address("wechat", "oOPENID"), 7), delete_at=3_000)

    assert await storage.due_replies(999) == []
    due = await storage.due_replies(2_000)
    assert [ref for _, ref in due] == [MessageRef(chat, 41), MessageRef(chat, 42)]
    assert {ref.message_id for _, ref in await storage.replies_of(ALICE)} == {41, 42}
    assert [ref.chat for _, ref in await storage.replies_of(BOB)] == [Address("wechat", "oOPENID")]
    flat = repr(await storage.dump())
    assert "987654321" not in flat and "oOPENID" not in flat, "a chat address was stored unsealed"

    await storage.forget_reply(due[0][0])
    assert [ref.message_id for _, ref in await storage.due_replies(2_000)] == [42]


async def test_due_replies_come_a_hundred_at_a_time(storage):
    for i in range(105):
        await storage.remember_reply(ALICE, MessageRef(Address("telegram", "1"), i), delete_at=i)
    first = await storage.due_replies(1_000)
    assert [ref.message_id for _, ref in first] == list(range(100))
    for row, _ in first:
        await storage.forget_reply(row)
    assert len(await storage.due_replies(1_000)) == 5


async def test_jobs_in_flight_are_lost_until_finished(storage):
    first = await storage.job_started(ALICE, Address("telegram", "111"), "en")
    second = await storage.job_started(BOB, Address("wechat", "oBOB"), "zh-hans")
    assert isinstance(first, int) and second != first
    assert await storage.lost_jobs() == [
        (first, Address("telegram", "111"), "en"),
        (second, Address("wechat", "oBOB"), "zh-hans"),
    ]
    await storage.job_finished(first)
    assert [row for row, _, _ in await storage.lost_jobs()] == [second]


async def test_rows_sealed_under_another_secret_are_dropped_not_opened(place):
    storage = await open_storage(place, SECRET)
    try:
        await storage.job_started(ALICE, Address("telegram", "111"), "en")
        await storage.remember_reply(ALICE, MessageRef(Address("telegram", "111"), 5), delete_at=1)
    finally:
        await storage.close()
    other = await open_storage(place, b"x" * 32)
    try:
        assert await other.due_replies(10) == []
        assert await other.lost_jobs() == []
        assert not [row for row in await other.dump() if row[0] == "inflight"], "an unreadable job row was kept"
    finally:
        await other.close()


async def test_rows_outlive_a_restart(place):
    storage = await open_storage(place, SECRET)
    try:
        await storage.record_consent(ALICE, V1)
    finally:
        await storage.close()
    storage = await open_storage(place, SECRET)
    try:
        assert await storage.consent(ALICE) == V1
    finally:
        await storage.close()


async def test_replay_guard_sees_each_key_once_until_it_expires(storage):
    assert await storage.first_sight("pair", "body", expires_at=1_000, now=900) is None
    assert await storage.first_sight("pair", "other", expires_at=1_000, now=950) == "body"
    assert await storage.first_sight("pair", "other", expires_at=1_000, now=1_000) == "body"
    assert await storage.first_sight("later", "x", expires_at=2_000, now=1_001) is None  # prunes "pair"
    assert await storage.first_sight("pair", "again", expires_at=3_000, now=1_002) is None


async def test_delete_person_removes_every_row_of_that_person_and_counts_them(storage):
    for person in (ALICE, BOB):
        await storage.record_consent(person, V1)
        await storage.record_consent(person, V2)
        await storage.set_preferences(person, Preferences("ink"))
        await storage.remember_reply(person, MessageRef(Address("telegram", "1"), 1), delete_at=10)
        await storage.job_started(person, Address("telegram", "1"), "en")
    await storage.first_sight("callback", "digest", expires_at=2**40, now=0)
    assert await storage.rows_of(ALICE) == 6

    receipt = await storage.delete_person(ALICE)

    assert receipt == {"consent": 1, "consent_history": 2, "preferences": 1, "reply_refs": 1, "inflight": 1}
    assert await storage.rows_of(ALICE) == 0
    assert await storage.rows_of(BOB) == 6
    assert await storage.delete_person(ALICE) == dict.fromkeys(receipt, 0)
    assert ("callbacks_seen", "callback", "digest", 2**40) in await storage.dump()
    assert all(row[0] != "callbacks_seen" for row in await storage.dump(replay_guard=False))


async def test_dump_is_every_row_in_a_stable_order(storage):
    await storage.record_consent(BOB, V1)
    await storage.record_consent(ALICE, V1)
    await storage.set_preferences(ALICE, Preferences("toon", 0.5, True))
    assert await storage.dump() == [
        ("consent_history", ALICE, "v1", "a" * 64, "en", 1_700_000_000),
        ("consent_history", BOB, "v1", "a" * 64, "en", 1_700_000_000),
        ("consents", ALICE, "v1", "a" * 64, "en", 1_700_000_000),
        ("consents", BOB, "v1", "a" * 64, "en", 1_700_000_000),
        ("preferences", ALICE, "toon", 0.5, 1),
    ]


async def test_concurrent_writers_do_not_lose_rows(storage):
    people = [f"person-{i}" for i in range(40)]
    await asyncio.gather(*(storage.record_consent(p, V1) for p in people))
    assert sorted([row[1] for row in await storage.dump() if row[0] == "consent_history"]) == sorted(people)


# -- PostgreSQL only: several processes on one database, and what erasure does there ---------------


@pytest.mark.postgres
async def test_two_processes_sharing_a_database_see_each_others_rows_and_race_fairly(postgres_url):
    one, two = await Storage.open_postgres(postgres_url, SECRET), await Storage.open_postgres(postgres_url, SECRET)
    try:
        await one.record_consent(ALICE, V1)
        assert await two.consent(ALICE) == V1
        # A replayed callback delivered to both at once: exactly one of them takes it as new.
        for round in range(20):
            seen = await asyncio.gather(
                *(s.first_sight(f"cb-{round}", "d", expires_at=2**40) for s in (one, two, one, two))
            )
            assert seen.count(None) == 1, seen
        assert (await two.delete_person(ALICE))["consent"] == 1
        assert await one.consent(ALICE) is None
    finally:
        await one.close()
        await two.close()


@pytest.mark.postgres
async def test_a_job_is_lost_only_when_the_process_running_it_has_ended(postgres_url):
    running, starting = await Storage.open_postgres(postgres_url, SECRET), await Storage.open_postgres(postgres_url, SECRET)
    try:
        row = await running.job_started(ALICE, Address("telegram", "111"), "en")
        assert await starting.lost_jobs() == [], "a job another live process is running was taken as lost"
        await running.close()  # the process ends without finishing it (as in a crash)
        restarted = [await Storage.open_postgres(postgres_url, SECRET) for _ in range(2)]
        try:
            found = await asyncio.gather(*(s.lost_jobs() for s in restarted))
            assert sorted(found, key=len) == [[], [(row, Address("telegram", "111"), "en")]], "reported once"
            await restarted[0 if found[0] else 1].job_finished(row)
            assert await starting.lost_jobs() == []
        finally:
            for storage in restarted:
                await storage.close()
        mine = await starting.job_started(BOB, Address("wechat", "oBOB"), "zh-hans")
        await starting.job_finished(mine)
        assert await starting.lost_jobs() == []
    finally:
        await starting.close()


@pytest.mark.postgres
async def test_tables_are_created_once_when_processes_start_together(postgres_url):
    opened = await asyncio.gather(*(Storage.open_postgres(postgres_url, SECRET) for _ in range(4)))
    try:
        assert await opened[0].tables() == await opened[3].tables()
    finally:
        for storage in opened:
            await storage.close()


@pytest.mark.postgres
async def test_erasure_vacuums_the_tables_it_deleted_from(postgres_url):
    import asyncpg

    storage = await Storage.open_postgres(postgres_url, SECRET)
    observer = await asyncpg.connect(postgres_url)

    async def vacuums() -> dict[str, tuple[int, int]]:
        await observer.execute("SELECT pg_stat_clear_snapshot()")
        rows = await observer.fetch("SELECT relname, vacuum_count, n_dead_tup FROM pg_stat_user_tables")
        return {row["relname"]: (row["vacuum_count"], row["n_dead_tup"]) for row in rows}

    try:
        await storage.record_consent(ALICE, V1)
        await storage.set_preferences(ALICE, Preferences("ink"))
        await storage.remember_reply(ALICE, MessageRef(Address("telegram", "1"), 1), delete_at=10)
        await storage.job_started(ALICE, Address("telegram", "1"), "en")
        before = await vacuums()
        await storage.delete_person(ALICE)
        after = await vacuums()
        for table in PERSON_TABLES:
            assert after[table][0] == before[table][0] + 1, f"{table} was not vacuumed after the erasure"
            assert after[table][1] == 0, f"{table} still has dead row versions"
        await storage.set_group_enabled("group", False)
        await storage.delete_group("group")
        assert (await vacuums())["groups"][0] == after["groups"][0] + 1
    finally:
        await observer.close()
        await storage.close()


@pytest.mark.postgres
async def test_an_unreachable_server_is_one_clear_error_without_the_password(postgres_url):
    from urllib.parse import urlsplit

    from bot.settings import StartupError

    parts = urlsplit(postgres_url)
    wrong_password = parts._replace(netloc=f"{parts.username}:Wr0ngPassw0rd@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(StartupError) as refused:
        await Storage.open_postgres(wrong_password, SECRET)
    message = str(refused.value)
    assert f"{parts.hostname}:{parts.port}{parts.path}" in message and "password" in message
    assert "Wr0ngPassw0rd" not in message and refused.value.__cause__ is None

    closed_port = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:9").geturl()
    with pytest.raises(StartupError) as unreachable:
        await Storage.open_postgres(closed_port, SECRET)
    assert "127.0.0.1:9" in str(unreachable.value) and parts.password not in str(unreachable.value)
