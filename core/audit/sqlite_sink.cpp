#include "core/audit/sqlite_sink.hpp"

#include "core/error.hpp"
#include "core/store/sqlite/migrations.hpp"

namespace kw::core::audit {
namespace {

constexpr const char* kColumns =
    "SELECT seq, time, type, actor, key, kid, op, outcome, details, prev_hash, hash, mac FROM audit_events";

Event read_event(const sqlite::Statement& s) {
    Event e;
    e.seq = static_cast<std::uint64_t>(s.integer(0));
    e.time = s.integer(1);
    // An unknown type string is tampering or corruption: keep the event and
    // let the hash check report it (the canonical form uses the type name).
    e.type = parse_event_type(s.text(2)).value_or(EventType::key_used);
    e.actor = s.text(3);
    e.key = s.text(4);
    e.kid = s.text(5);
    e.operation = s.text(6);
    e.outcome = s.text(7);
    e.details = s.text(8);
    e.prev_hash = s.text(9);
    e.hash = s.text(10);
    e.mac = s.text(11);
    return e;
}

Checkpoint read_checkpoint(const sqlite::Statement& s) {
    return Checkpoint{static_cast<std::uint64_t>(s.integer(0)), s.text(1), s.integer(2), s.text(3)};
}

}  // namespace

std::string sqlite_path_from_url(const std::string& url) {
    for (const char* prefix : {"sqlite://", "sqlite:"}) {
        if (url.rfind(prefix, 0) == 0) return url.substr(std::char_traits<char>::length(prefix));
    }
    return url;
}

SqliteSink::SqliteSink(const std::string& path, Durability durability, int busy_timeout_ms, bool auto_checkpoint)
    : db_(path, busy_timeout_ms), writer_(db_) {
    db_.exec("PRAGMA journal_mode=WAL");
    if (!auto_checkpoint) sqlite3_wal_autocheckpoint(db_.get(), 0);
    db_.exec(durability == Durability::power ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    sqlite::migrate(db_);
    insert_event_ = std::make_unique<sqlite::Statement>(
        db_,
        "INSERT INTO audit_events(seq, time, type, actor, key, kid, op, outcome, details, prev_hash, hash, mac) "
        "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)");
    insert_checkpoint_ = std::make_unique<sqlite::Statement>(
        db_, "INSERT INTO audit_checkpoints(seq, head_hash, time, signature) VALUES (?1,?2,?3,?4)");
}

SqliteSink::~SqliteSink() {
    insert_event_.reset();
    insert_checkpoint_.reset();
}

namespace {
const std::string& last_event_sql() {
    static const std::string sql = std::string(kColumns) + " ORDER BY seq DESC LIMIT 1";
    return sql;
}
constexpr const char* kLastCheckpoint =
    "SELECT seq, head_hash, time, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1";
}  // namespace

std::optional<Event> SqliteSink::last_event() {
    sqlite::Statement s(db_, last_event_sql().c_str());
    if (!s.step()) return std::nullopt;
    return read_event(s);
}

std::optional<Checkpoint> SqliteSink::last_checkpoint() {
    sqlite::Statement s(db_, kLastCheckpoint);
    if (!s.step()) return std::nullopt;
    return read_checkpoint(s);
}

void SqliteSink::append(std::span<const Event> events, const std::optional<Checkpoint>& checkpoint) {
    sqlite::Transaction tx(db_);
    insert(events, checkpoint);
    tx.commit();
}

Sink::Batch SqliteSink::append_at_head(
    const std::function<Batch(const std::optional<Event>&, const std::optional<Checkpoint>&)>& build) {
    sqlite::Transaction tx(db_);  // BEGIN IMMEDIATE: no other writer until commit
    // Only one Log leader appends at a time: it may use the cached statements.
    std::optional<Event> head;
    std::optional<Checkpoint> cp;
    {
        auto s = writer_.get(last_event_sql());
        if (s->step()) head = read_event(*s);
    }
    {
        auto s = writer_.get(kLastCheckpoint);
        if (s->step()) cp = read_checkpoint(*s);
    }
    Batch batch = build(head, cp);
    insert(batch.events, batch.checkpoint, batch.spool_mark);
    tx.commit();
    return batch;
}

void SqliteSink::insert(std::span<const Event> events, const std::optional<Checkpoint>& checkpoint,
                        const std::optional<SpoolMark>& mark) {
    for (const auto& e : events) {
        auto& s = *insert_event_;
        s.reset();
        s.bind(1, static_cast<std::int64_t>(e.seq))
            .bind(2, e.time)
            .bind(3, to_string(e.type))
            .bind(4, e.actor)
            .bind(5, e.key)
            .bind(6, e.kid)
            .bind(7, e.operation)
            .bind(8, e.outcome)
            .bind(9, e.details)
            .bind(10, e.prev_hash)
            .bind(11, e.hash)
            .bind(12, e.mac);
        s.run();
    }
    if (checkpoint) {
        auto& s = *insert_checkpoint_;
        s.reset();
        s.bind(1, static_cast<std::int64_t>(checkpoint->seq))
            .bind(2, checkpoint->head_hash)
            .bind(3, checkpoint->time)
            .bind(4, checkpoint->signature);
        s.run();
    }
    if (mark) {
        auto s = writer_.get(
            "INSERT INTO audit_spools(id, ingested) VALUES (?1, ?2) "
            "ON CONFLICT(id) DO UPDATE SET ingested = excluded.ingested");
        s->bind(1, mark->id).bind(2, static_cast<std::int64_t>(mark->ingested));
        s->run();
    }
}

std::uint64_t SqliteSink::spool_ingested(const std::string& id) {
    sqlite::Statement s(db_, "SELECT ingested FROM audit_spools WHERE id = ?1");
    s.bind(1, id);
    return s.step() ? static_cast<std::uint64_t>(s.integer(0)) : 0;
}

void SqliteSink::forget_spool(const std::string& id) {
    sqlite::Statement s(db_, "DELETE FROM audit_spools WHERE id = ?1");
    s.bind(1, id);
    s.run();
}

void SqliteSink::for_each(const std::function<bool(const Event&)>& fn) {
    sqlite::Statement s(db_, (std::string(kColumns) + " ORDER BY seq").c_str());
    while (s.step()) {
        if (!fn(read_event(s))) break;
    }
}

std::optional<std::uint64_t> SqliteSink::seq_of_hash(const std::string& hash) {
    sqlite::Statement s(db_, "SELECT seq FROM audit_events WHERE hash = ?1 LIMIT 1");
    s.bind(1, hash);
    if (!s.step()) return std::nullopt;
    return static_cast<std::uint64_t>(s.integer(0));
}

std::vector<Checkpoint> SqliteSink::checkpoints() {
    sqlite::Statement s(db_, "SELECT seq, head_hash, time, signature FROM audit_checkpoints ORDER BY seq");
    std::vector<Checkpoint> out;
    while (s.step()) out.push_back({static_cast<std::uint64_t>(s.integer(0)), s.text(1), s.integer(2), s.text(3)});
    return out;
}

std::vector<Event> SqliteSink::query(const Query& q) {
    std::string sql = std::string(kColumns) + " WHERE 1=1";
    if (q.key) sql += " AND key = ?1";
    if (q.type) sql += " AND type = ?2";
    if (q.since) sql += " AND time >= ?3";
    if (q.after_seq) sql += " AND seq > ?4";
    sql += " ORDER BY seq LIMIT ?5";
    sqlite::Statement s(db_, sql.c_str());
    if (q.key) s.bind(1, *q.key);
    if (q.type) s.bind(2, to_string(*q.type));
    if (q.since) s.bind(3, *q.since);
    if (q.after_seq) s.bind(4, static_cast<std::int64_t>(*q.after_seq));
    s.bind(5, static_cast<std::int64_t>(q.limit));
    std::vector<Event> out;
    while (s.step()) out.push_back(read_event(s));
    return out;
}

}  // namespace kw::core::audit
