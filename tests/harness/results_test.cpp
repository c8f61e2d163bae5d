// Run folder, JSONL and provenance tests. The crash cases are simulated by writing the bytes a
// crash would leave (a partial last line) and checking that reopening repairs the file and that
// readers ignore the fragment; run-folder tests pre-create colliding folders to force suffixes.
#include "harness/io/results.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness/io/provenance.hpp"

#include "tests/support/scoped_env.hpp"
#include "tests/support/temp_dir.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using cpb::testing_support::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> folder_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool is_path_timestamp(const std::string& s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return false;
  for (size_t i = 0; i < 15; ++i)
    if (i != 8 && !std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

}  // namespace

TEST(Results, TimestampFormats) {
  EXPECT_TRUE(is_path_timestamp(cpb::utc_timestamp_for_path())) << cpb::utc_timestamp_for_path();
  const std::string iso = cpb::utc_iso8601();
  ASSERT_EQ(iso.size(), 20u) << iso;
  EXPECT_EQ(iso[4], '-');
  EXPECT_EQ(iso[10], 'T');
  EXPECT_EQ(iso[13], ':');
  EXPECT_EQ(iso.back(), 'Z');
}

TEST(Results, AtomicWriteReplacesAndLeavesNoTemp) {
  TempDir dir;
  const std::string path = dir.file("manifest.json");
  ASSERT_TRUE(cpb::write_file_atomic(path, "first").ok());
  EXPECT_EQ(read_bytes(path), "first");
  ASSERT_TRUE(cpb::write_file_atomic(path, std::string(100000, 'x')).ok());
  EXPECT_EQ(read_bytes(path), std::string(100000, 'x'));
  ASSERT_TRUE(cpb::write_file_atomic(path, "").ok());
  EXPECT_EQ(read_bytes(path), "");
  EXPECT_EQ(folder_entries(dir.path()), std::vector<std::string>{"manifest.json"});

  auto bad = cpb::write_file_atomic(dir.file("missing/x.json"), "y");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.error().str(), "missing")) << bad.error().str();
  EXPECT_FALSE(cpb::write_file_atomic(dir.path().string() + "/", "y").ok());
  // A directory in the way: the rename fails and the temp file is removed again.
  fs::create_directory(dir.file("taken"));
  EXPECT_FALSE(cpb::write_file_atomic(dir.file("taken"), "y").ok());
  EXPECT_EQ(folder_entries(dir.path()), (std::vector<std::string>{"manifest.json", "taken"}));
}

TEST(Results, JsonlAppendAndRead) {
  TempDir dir;
  const std::string path = dir.file("results.jsonl");
  {
    auto w = cpb::JsonlWriter::open(path);
    ASSERT_TRUE(w.ok()) << w.error().detail();
    EXPECT_EQ(w->dropped_bytes(), 0);
    ASSERT_TRUE(w->append({{"point_id", "a"}, {"status", "ok"}, {"t", 1.5}}).ok());
    ASSERT_TRUE(w->append({{"point_id", "b"}, {"msg", "line\nbreak"}}).ok());
  }
  {
    auto w = cpb::JsonlWriter::open(path);  // reopening appends, never truncates
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->dropped_bytes(), 0);
    ASSERT_TRUE(w->append({{"point_id", "c"}}).ok());
    // Invalid UTF-8 must not make the record vanish.
    ASSERT_TRUE(w->append({{"point_id", "d"}, {"s", std::string("bad\xff")}}).ok());
  }
  const std::string text = read_bytes(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4);
  EXPECT_EQ(text.back(), '\n');
  auto recs = cpb::read_jsonl(path);
  ASSERT_TRUE(recs.ok()) << recs.error().detail();
  ASSERT_EQ(recs->size(), 4u);
  EXPECT_EQ((*recs)[0]["t"], 1.5);
  EXPECT_EQ((*recs)[1]["msg"], "line\nbreak");
  EXPECT_EQ((*recs)[2]["point_id"], "c");
}

TEST(Results, JsonlWriterRepairsPartialLastLine) {
  TempDir dir;
  const std::string path = dir.file("results.jsonl");
  write_bytes(path, "{\"a\":1}\n{\"b\":");
  {
    auto w = cpb::JsonlWriter::open(path);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->dropped_bytes(), 5);
    EXPECT_EQ(read_bytes(path), "{\"a\":1}\n");
    ASSERT_TRUE(w->append({{"c", 2}}).ok());
  }
  EXPECT_EQ(read_bytes(path), "{\"a\":1}\n{\"c\":2}\n");

  // Nothing but a fragment: everything goes.
  write_bytes(path, "{\"x\"");
  {
    auto w = cpb::JsonlWriter::open(path);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->dropped_bytes(), 4);
  }
  EXPECT_EQ(read_bytes(path), "");

  // Fragments longer than the 64 KiB scan window, with and without an earlier line.
  write_bytes(path, "{}\n" + std::string(200000, 'x'));
  {
    auto w = cpb::JsonlWriter::open(path);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->dropped_bytes(), 200000);
  }
  EXPECT_EQ(read_bytes(path), "{}\n");
  write_bytes(path, std::string(150000, 'y'));
  {
    auto w = cpb::JsonlWriter::open(path);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->dropped_bytes(), 150000);
  }
  EXPECT_EQ(read_bytes(path), "");
}

TEST(Results, JsonlWriterErrors) {
  TempDir dir;
  const std::string path = dir.file("results.jsonl");
  auto first = cpb::JsonlWriter::open(path);
  ASSERT_TRUE(first.ok());
  auto second = cpb::JsonlWriter::open(path);
  ASSERT_FALSE(second.ok()) << "two writers on one results file";
  EXPECT_TRUE(contains(second.error().str(), "another process"));
  EXPECT_FALSE(cpb::JsonlWriter::open(dir.file("no/such/results.jsonl")).ok());
  EXPECT_FALSE(cpb::JsonlWriter::open(dir.path().string()).ok());

  // Moving hands over the file; the moved-from writer refuses politely.
  cpb::JsonlWriter moved = std::move(*first);
  EXPECT_TRUE(moved.append({{"k", 1}}).ok());
  EXPECT_FALSE(first->append({{"k", 2}}).ok());  // NOLINT(bugprone-use-after-move)
}

TEST(Results, JsonlConcurrentAppendsStayWhole) {
  TempDir dir;
  const std::string path = dir.file("results.jsonl");
  auto w = cpb::JsonlWriter::open(path);
  ASSERT_TRUE(w.ok());
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        json rec = {{"t", t}, {"i", i}, {"pad", std::string(static_cast<size_t>(100 * t), 'p')}};
        if (!w->append(rec).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  auto recs = cpb::read_jsonl(path);
  ASSERT_TRUE(recs.ok()) << recs.error().detail();
  ASSERT_EQ(recs->size(), static_cast<size_t>(kThreads * kEach));
  std::set<std::pair<int, int>> seen;
  for (const auto& r : *recs) seen.insert({r["t"].get<int>(), r["i"].get<int>()});
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach));
}

TEST(Results, ReadJsonlToleratesPartialTailButNotCorruption) {
  TempDir dir;
  const std::string path = dir.file("r.jsonl");
  write_bytes(path, "{\"a\":1}\n\n  \n{\"b\":2}\r\n{\"c\":");
  auto recs = cpb::read_jsonl(path);
  ASSERT_TRUE(recs.ok()) << recs.error().detail();
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[1]["b"], 2);

  write_bytes(path, "{\"a\":1}\n{\"b\":2,,}\n{\"c\":3}\n");
  recs = cpb::read_jsonl(path);
  ASSERT_FALSE(recs.ok());
  EXPECT_TRUE(contains(recs.error().str(), path + ":2:")) << recs.error().str();

  write_bytes(path, "");
  recs = cpb::read_jsonl(path);
  ASSERT_TRUE(recs.ok());
  EXPECT_TRUE(recs->empty());
  EXPECT_FALSE(cpb::read_jsonl(dir.file("absent.jsonl")).ok());
}

TEST(Results, FinishedPointIds) {
  const std::vector<json> recs = {
      {{"point_id", "p1"}, {"status", "ok"}},
      {{"point_id", "p2"}, {"status", "invalid"}},
      {{"point_id", "p3"}, {"status", "error"}},
      {{"point_id", "p4"}},
      {{"point_id", 5}, {"status", "ok"}},
      json::array({1, 2}),
      {{"status", "ok"}},
  };
  EXPECT_EQ(cpb::finished_point_ids(recs), (std::set<std::string>{"p1", "p2"}));
}

TEST(Results, RunFolderNaming) {
  TempDir dir;
  const std::string parent = dir.file("results/runs");  // created on demand
  auto rf = cpb::create_run_folder(parent, "sweep");
  ASSERT_TRUE(rf.ok()) << rf.error().detail();
  EXPECT_TRUE(fs::is_directory(rf->dir));
  EXPECT_EQ(fs::path(rf->dir).parent_path(), fs::path(parent));
  const std::string base = fs::path(rf->dir).filename().string();
  ASSERT_EQ(base.rfind("sweep-", 0), 0u) << base;
  EXPECT_TRUE(is_path_timestamp(base.substr(6))) << base;
  EXPECT_EQ(base.substr(6), rf->timestamp);
  EXPECT_EQ(rf->name, "sweep");
  EXPECT_EQ(rf->manifest_path(), rf->dir + "/manifest.json");
  EXPECT_EQ(rf->results_path(), rf->dir + "/results.jsonl");

  for (const char* bad : {"", "a/b", "..", "."})
    EXPECT_FALSE(cpb::create_run_folder(parent, bad).ok());
}

TEST(Results, RunFolderCollisionSuffix) {
  TempDir dir;
  const std::string parent = dir.path().string();
  // Occupy this second's folder and its -2 so create_run_folder must take -3. Retry if the
  // clock ticks over in between.
  for (int attempt = 0; attempt < 5; ++attempt) {
    const std::string stamp = cpb::utc_timestamp_for_path();
    const std::string base = dir.file("exp-" + stamp);
    fs::create_directories(base);
    fs::create_directories(base + "-2");
    auto rf = cpb::create_run_folder(parent, "exp");
    ASSERT_TRUE(rf.ok()) << rf.error().detail();
    if (rf->timestamp != stamp) continue;
    EXPECT_EQ(rf->dir, base + "-3");
    auto again = cpb::create_run_folder(parent, "exp");
    ASSERT_TRUE(again.ok());
    if (again->timestamp == stamp) {
      EXPECT_EQ(again->dir, base + "-4");
    }
    return;
  }
  FAIL() << "clock kept ticking over";
}

TEST(Results, LatestRunFolder) {
  TempDir dir;
  const std::string parent = dir.path().string();
  auto none = cpb::latest_run_folder(parent, "exp");
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(contains(none.error().str(), "--resume"));
  EXPECT_TRUE(contains(none.error().str(), "--run-dir"));
  auto missing = cpb::latest_run_folder(dir.file("nowhere"), "exp");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error().str(), "--run-dir"));

  const auto make = [&](const std::string& name, bool manifest) {
    fs::create_directories(dir.path() / name);
    if (manifest) write_bytes((dir.path() / name / "manifest.json").string(), "{}");
  };
  make("exp-20260101T000000Z", true);
  make("exp-20260102T000000Z", true);
  make("exp-20260102T000000Z-2", true);
  make("exp-20260102T000000Z-10", true);     // numerically newest, lexically not
  make("exp-20270101T000000Z", false);       // no manifest: a run that never started
  make("exp-other-20280101T000000Z", true);  // a different experiment
  make("exp-20290101T000000Z.bak", true);
  write_bytes(dir.file("exp-20300101T000000Z"), "a file, not a folder");
  auto latest = cpb::latest_run_folder(parent, "exp");
  ASSERT_TRUE(latest.ok()) << latest.error().detail();
  EXPECT_EQ(latest.value(), dir.file("exp-20260102T000000Z-10"));
  auto other = cpb::latest_run_folder(parent, "exp-other");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other.value(), dir.file("exp-other-20280101T000000Z"));
}

TEST(Provenance, CollectsEverything) {
  const char* argv[] = {"cpbench", "run", "my config.yaml", "--filter", "it's", "", "bad\xff"};
  const json p = cpb::collect_provenance(7, argv);
  for (const char* key : {"cpbench_version", "git", "host", "os", "cpu", "compiler", "cwd", "argv",
                          "repro", "env", "time_utc"})
    EXPECT_TRUE(p.contains(key)) << key;
  ASSERT_EQ(p["argv"].size(), 7u);
  EXPECT_EQ(p["argv"][2], "my config.yaml");
  EXPECT_EQ(p["repro"].get<std::string>(),
            "cpbench run 'my config.yaml' --filter 'it'\"'\"'s' '' 'bad\xef\xbf\xbd'");
  EXPECT_TRUE(p["host"].is_string());
  EXPECT_FALSE(p["host"].get<std::string>().empty());
  const auto& sha = p["git"]["sha"];
  ASSERT_TRUE(sha.is_string());
  EXPECT_TRUE(sha == "unknown" || sha.get<std::string>().size() == 40) << sha;
  EXPECT_TRUE(p["git"]["dirty"].is_boolean() || p["git"]["dirty"] == "unknown");
  EXPECT_TRUE(p["cpu"]["logical_cores"].is_number() || p["cpu"]["logical_cores"] == "unknown");
  EXPECT_NO_THROW((void)p.dump());  // valid UTF-8 throughout

  const json empty = cpb::collect_provenance(0, nullptr);
  EXPECT_TRUE(empty["argv"].empty());
  EXPECT_EQ(empty["repro"], "");
}

// On a copied tree (a lent GPU machine) the caller names the commit; its word wins over what a
// stale .git there says, which is kept beside it.
TEST(Provenance, TheCallersCommitWins) {
  cpb::testing_support::ScopedEnv sha("CPBENCH_GIT_SHA", "abc1234");
  cpb::testing_support::ScopedEnv dirty("CPBENCH_GIT_DIRTY", "0");
  const json git = cpb::collect_provenance(0, nullptr)["git"];
  EXPECT_EQ(git["sha"], "abc1234");
  EXPECT_EQ(git["sha_from"], "CPBENCH_GIT_SHA");
  EXPECT_EQ(git["dirty"], false);
  if (git.contains("sha_git")) EXPECT_NE(git["sha_git"], "abc1234");
}

TEST(Provenance, ShellQuote) {
  EXPECT_EQ(cpb::shell_quote("plain-word_1.2/x=y:z,@%+"), "plain-word_1.2/x=y:z,@%+");
  EXPECT_EQ(cpb::shell_quote(""), "''");
  EXPECT_EQ(cpb::shell_quote("a b"), "'a b'");
  EXPECT_EQ(cpb::shell_quote("$HOME"), "'$HOME'");
  EXPECT_EQ(cpb::shell_quote("it's"), "'it'\"'\"'s'");
  EXPECT_EQ(cpb::shell_join({"a", "b c"}), "a 'b c'");
}
