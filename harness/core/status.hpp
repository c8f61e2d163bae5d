// Errors as values. Every fallible function returns Status or Expected<T>; an Error carries the
// message a user can act on, the file:line where it was raised, the rank it happened on (-1 when
// no rank is involved) and the call-site hops it travelled through (added by CPB_TRY, the way
// NCCLCHECK builds its back-trace). Nothing below main() calls exit().
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace cpb {

struct Error {
  std::string message;  // what went wrong and, where possible, what to change
  std::string where;    // file:line where it was raised
  int rank = -1;        // rank that raised it, -1 if none
  std::vector<std::string> hops;  // file:line of each CPB_TRY it passed through

  // One line for users: "[rank 2] message".
  std::string str() const;
  // The line plus where it was raised and its hops, for logs.
  std::string detail() const;
  Error&& hop(const char* file, int line) &&;
  Error&& on_rank(int r) && {
    if (rank < 0) rank = r;
    return std::move(*this);
  }
};

Error make_error(const char* file, int line, std::string message);

template <class T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Expected(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  Error& error() & { return std::get<1>(v_); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Expected<void> {
 public:
  Expected() = default;
  Expected(Error error) : e_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  Error& error() & { return *e_; }
  const Error& error() const& { return *e_; }
  Error&& error() && { return std::move(*e_); }

 private:
  std::optional<Error> e_;
};

using Status = Expected<void>;

inline Status ok_status() { return {}; }

}  // namespace cpb

#define CPB_CONCAT_INNER(a, b) a##b
#define CPB_CONCAT(a, b) CPB_CONCAT_INNER(a, b)

// Builds an Error at this file:line from a fmt format string.
#define CPB_ERROR(...) ::cpb::make_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

// Returns early from the enclosing function with the error of a failed Status/Expected.
#define CPB_TRY(expr) CPB_TRY_IMPL(CPB_CONCAT(cpb_try_result_, __LINE__), expr)
#define CPB_TRY_IMPL(tmp, expr)                                    \
  do {                                                             \
    auto&& tmp = (expr);                                           \
    if (!tmp.ok()) return std::move(tmp).error().hop(__FILE__, __LINE__); \
  } while (0)

// `CPB_ASSIGN_OR_RETURN(auto x, f());` declares x from a successful Expected, else returns.
#define CPB_ASSIGN_OR_RETURN(lhs, expr) \
  CPB_ASSIGN_OR_RETURN_IMPL(CPB_CONCAT(cpb_expected_, __LINE__), lhs, expr)
#define CPB_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)            \
  auto tmp = (expr);                                         \
  if (!tmp.ok()) return std::move(tmp).error().hop(__FILE__, __LINE__); \
  lhs = std::move(tmp).value()

// Returns an error when a condition a caller must guarantee does not hold.
#define CPB_REQUIRE(cond, ...)                          \
  do {                                                  \
    if (!(cond)) return CPB_ERROR(__VA_ARGS__);         \
  } while (0)
