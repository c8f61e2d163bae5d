// A small expression language over the parameters of a config point, used by the YAML `where`
// constraints and by the CLI's `--filter`. Expressions are parsed once (parse_expr), checked
// against the names the caller knows (check_expr_names) so that a typo fails before anything
// runs, and evaluated per point (eval_bool / eval_expr). Errors never throw; they name the column
// of the expression where parsing stopped, or the operation and operand values that failed.
//
// Grammar, loosest binding first (all binary operators are left-associative):
//   expr    := and ( ('or' | '||') and )*
//   and     := not ( ('and' | '&&') not )*
//   not     := ('not' | '!') not | cmp            ("not a == b" is "not (a == b)", as in Python)
//   cmp     := sum [ ('==' | '!=' | '<' | '<=' | '>' | '>=') sum ]   (comparisons do not chain)
//   sum     := product ( ('+' | '-') product )*
//   product := unary ( ('*' | '/' | '%') unary )*
//   unary   := ('-' | '+') unary | primary
//   primary := INT | REAL | STRING | 'true' | 'false' | NAME | '(' expr ')'
// Literals: INT is decimal digits (int64); REAL has a '.' or an exponent (1e6, 0.5, .25);
// STRING is '...' or "..." with no escapes (use the other quote to embed one). The words and, or,
// not, true, false are reserved.
//
// Names: a NAME is [A-Za-z_][A-Za-z0-9_]*. It may also contain '-' and '.' (llama3-8b) when the
// whole word is one of the symbols given to parse_expr; otherwise the '-' is subtraction, so
// `context-new_tokens` is a difference. A NAME evaluates, in this order, to the point's value of
// that key; an error when it is a known key the point does not set; the symbol itself as a string
// when it is a known symbol (so `strategy == ring_pass_kv` works without quotes); otherwise an
// error that lists the keys and says to quote string values. A word that is both a key and a
// symbol (`ulysses` is a key and a strategy) means the key, except where it is compared with a
// string, where it means the symbol: `strategy == ulysses and ulysses >= 2` works.
//
// Types: int64, real (double), string, bool. `+ - *` on two ints give an int (overflow is an
// error); with a real they give a real. `/` is always real division (7 / 2 == 3.5); `%` takes two
// ints and gives the C++ remainder (sign of the left operand), so divisibility reads
// `new_tokens % (2 * cp) == 0`. Division or remainder by zero is an error. Numbers compare with
// numbers (an int and a real compare as reals), strings with strings (byte order), bools only by
// == and !=; any other mix is an error. `and`, `or`, `not` take bools and short-circuit.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "harness/config/config.hpp"
#include "harness/core/status.hpp"

namespace cpb {

struct ExprNode;  // the syntax tree; defined in expr.cpp

// A parsed expression. Cheap to copy (the tree is shared and immutable).
class Expr {
 public:
  Expr() = default;
  Expr(std::shared_ptr<const ExprNode> root, std::string text, std::set<std::string> names)
      : root_(std::move(root)), text_(std::move(text)), names_(std::move(names)) {}

  const ExprNode* root() const { return root_.get(); }
  // The text it was parsed from.
  const std::string& text() const { return text_; }
  // Every NAME it mentions, for up-front checks.
  const std::set<std::string>& names() const { return names_; }

 private:
  std::shared_ptr<const ExprNode> root_;
  std::string text_;
  std::set<std::string> names_;
};

// What a NAME can stand for while evaluating.
struct ExprScope {
  const std::map<std::string, ParamValue>* values = nullptr;  // the point's parameters
  const std::set<std::string>* keys = nullptr;     // keys a point may have; null: values' keys
  const std::set<std::string>* symbols = nullptr;  // bare words that stand for themselves
};

// Parses `text`. `symbols` only decides whether a word with '-' or '.' is one NAME (see above).
Expected<Expr> parse_expr(std::string_view text, const std::set<std::string>& symbols = {});

// Checks that every NAME of `e` is one of `keys` or `symbols`, so that a typo is reported before
// any point is evaluated.
Status check_expr_names(const Expr& e, const std::set<std::string>& keys,
                        const std::set<std::string>& symbols);

// Evaluates `e` to a value.
Expected<ParamValue> eval_expr(const Expr& e, const ExprScope& scope);
// Evaluates `e` and requires a bool.
Expected<bool> eval_bool(const Expr& e, const ExprScope& scope);

}  // namespace cpb
