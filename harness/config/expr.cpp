// The `where` / `--filter` expression language: a tokenizer, a recursive-descent parser that
// builds an immutable tree, and an evaluator over a point's parameters. The rules (grammar,
// types, how bare names resolve) are documented in expr.hpp. Nesting is bounded so that hostile
// input cannot exhaust the stack, and every failure is an Error value, never an exception.
#include "harness/config/expr.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <type_traits>
#include <vector>

namespace cpb {

struct ExprNode {
  enum class Op {
    literal,
    name,
    neg,
    pos,
    not_,
    add,
    sub,
    mul,
    div,
    mod,
    eq,
    ne,
    lt,
    le,
    gt,
    ge,
    and_,
    or_
  };
  Op op = Op::literal;
  ParamValue value;    // literal
  std::string name;    // name
  std::string symbol;  // operator as written, for messages
  int column = 0;      // 1-based, where the node starts
  int depth = 1;       // height of the subtree, bounded by kMaxDepth
  std::shared_ptr<const ExprNode> lhs, rhs;
};

namespace {

using NodePtr = std::shared_ptr<const ExprNode>;
using Op = ExprNode::Op;

// Bounds the parser's recursion and the tree height (the evaluator recurses over the tree), so
// "((((...))))" or "1+1+...+1" from a hostile --filter cannot overflow the stack.
constexpr int kMaxDepth = 200;

// Quotes text for a message: printable ASCII kept, other bytes as \xNN, long text cut.
std::string shown(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && out.size() < 80; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (out.size() >= 80) out += "...";
  return out;
}

bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

struct Token {
  enum class Kind { end, literal, name, op };
  Kind kind = Kind::end;
  std::string text;  // operator or name as written
  ParamValue value;  // literal
  int column = 0;    // 1-based
};

class Lexer {
 public:
  Lexer(std::string_view text, const std::set<std::string>& symbols)
      : s_(text), symbols_(symbols) {}

  Expected<std::vector<Token>> run() {
    std::vector<Token> out;
    while (true) {
      while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
      Token t;
      t.column = static_cast<int>(i_) + 1;
      if (i_ >= s_.size()) {
        out.push_back(t);
        return out;
      }
      char c = s_[i_];
      if (std::isdigit(static_cast<unsigned char>(c)) ||
          (c == '.' && i_ + 1 < s_.size() &&
           std::isdigit(static_cast<unsigned char>(s_[i_ + 1])))) {
        CPB_TRY(number(t));
      } else if (c == '\'' || c == '"') {
        size_t close = s_.find(c, i_ + 1);
        if (close == std::string_view::npos)
          return err(t.column, fmt::format("string opened with {} is not closed", c));
        t.kind = Token::Kind::literal;
        t.value = std::string(s_.substr(i_ + 1, close - i_ - 1));
        i_ = close + 1;
      } else if (is_name_start(c)) {
        word(t);
      } else {
        CPB_TRY(op(t));
      }
      out.push_back(std::move(t));
    }
  }

 private:
  Error err(int column, const std::string& msg) const {
    return CPB_ERROR("at column {}: {}", column, msg);
  }

  Status number(Token& t) {
    size_t start = i_;
    bool real = false;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    if (i_ < s_.size() && s_[i_] == '.') {
      real = true;
      ++i_;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      size_t j = i_ + 1;
      if (j < s_.size() && (s_[j] == '+' || s_[j] == '-')) ++j;
      if (j < s_.size() && std::isdigit(static_cast<unsigned char>(s_[j]))) {
        real = true;
        i_ = j;
        while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
      }
    }
    std::string_view lit = s_.substr(start, i_ - start);
    // "2cp" or "1.5.2" is a typo, not a number followed by a name.
    if (i_ < s_.size() && (is_name_char(s_[i_]) || s_[i_] == '.'))
      return err(t.column,
                 fmt::format("malformed number '{}'", shown(s_.substr(start, i_ + 1 - start))));
    t.kind = Token::Kind::literal;
    if (real) {
      double d = 0;
      auto r = std::from_chars(lit.data(), lit.data() + lit.size(), d);
      if (r.ec != std::errc() || !std::isfinite(d))
        return err(t.column, fmt::format("number '{}' is out of range", shown(lit)));
      t.value = d;
    } else {
      int64_t v = 0;
      auto r = std::from_chars(lit.data(), lit.data() + lit.size(), v);
      if (r.ec != std::errc())
        return err(t.column,
                   fmt::format("integer '{}' is too large (at most {})", shown(lit), INT64_MAX));
      t.value = v;
    }
    return {};
  }

  void word(Token& t) {
    size_t start = i_;
    while (i_ < s_.size() && is_name_char(s_[i_])) ++i_;
    // A word with '-' or '.' inside (llama3-8b) is one name only when it is a known symbol;
    // take the longest such reading, else leave the '-' to be an operator.
    if (i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '.') && !symbols_.empty()) {
      size_t k = i_;
      while (k < s_.size() && (is_name_char(s_[k]) || s_[k] == '-' || s_[k] == '.')) ++k;
      for (size_t end = k; end > i_; --end) {
        if (s_[end - 1] == '-' || s_[end - 1] == '.') continue;
        if (symbols_.count(std::string(s_.substr(start, end - start)))) {
          i_ = end;
          break;
        }
      }
    }
    std::string w(s_.substr(start, i_ - start));
    if (w == "true" || w == "false") {
      t.kind = Token::Kind::literal;
      t.value = (w == "true");
    } else if (w == "and" || w == "or" || w == "not") {
      t.kind = Token::Kind::op;
      t.text = std::move(w);
    } else {
      t.kind = Token::Kind::name;
      t.text = std::move(w);
    }
  }

  Status op(Token& t) {
    static constexpr std::string_view two[] = {"||", "&&", "==", "!=", "<=", ">="};
    for (auto o : two) {
      if (s_.substr(i_, 2) == o) {
        t.kind = Token::Kind::op;
        t.text = std::string(o);
        i_ += 2;
        return {};
      }
    }
    char c = s_[i_];
    if (std::string_view("<>!+-*/%()").find(c) != std::string_view::npos) {
      t.kind = Token::Kind::op;
      t.text = std::string(1, c);
      ++i_;
      return {};
    }
    if (c == '=') return err(t.column, "'=' is not an operator: use '==' to compare");
    if (c == '|') return err(t.column, "'|' is not an operator: use '||' or 'or'");
    if (c == '&') return err(t.column, "'&' is not an operator: use '&&' or 'and'");
    return err(t.column, fmt::format("unexpected character '{}'", shown(s_.substr(i_, 1))));
  }

  std::string_view s_;
  const std::set<std::string>& symbols_;
  size_t i_ = 0;
};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Expected<NodePtr> run() {
    CPB_ASSIGN_OR_RETURN(NodePtr root, parse_or());
    if (peek().kind != Token::Kind::end)
      return err(peek(), fmt::format("unexpected '{}' after a complete expression{}", peek_text(),
                                     peek().kind == Token::Kind::op && is_cmp(peek().text)
                                         ? ": comparisons do not chain, join them with 'and'"
                                         : ""));
    return root;
  }

  std::set<std::string> names;

 private:
  const Token& peek() const { return t_[pos_]; }
  std::string peek_text() const {
    const Token& t = peek();
    if (t.kind == Token::Kind::end) return "end of expression";
    if (t.kind == Token::Kind::literal) {
      if (auto* s = std::get_if<std::string>(&t.value)) return "'" + shown(*s) + "'";
      return to_string(t.value);
    }
    return t.text;
  }
  bool at_op(std::string_view o) const {
    return peek().kind == Token::Kind::op && peek().text == o;
  }
  static bool is_cmp(const std::string& o) {
    return o == "==" || o == "!=" || o == "<" || o == "<=" || o == ">" || o == ">=";
  }
  Error err(const Token& t, const std::string& msg) const {
    return CPB_ERROR("at column {}: {}", t.column, msg);
  }

  Error too_deep() const {
    return err(peek(), fmt::format("the expression nests more than {} levels deep", kMaxDepth));
  }

  Expected<NodePtr> make(Op op, const Token& at, NodePtr lhs, NodePtr rhs) {
    auto n = std::make_shared<ExprNode>();
    n->op = op;
    n->symbol = at.text;
    n->column = lhs && op != Op::neg && op != Op::pos && op != Op::not_ ? lhs->column : at.column;
    n->depth = 1 + std::max(lhs ? lhs->depth : 0, rhs ? rhs->depth : 0);
    if (n->depth > kMaxDepth) return too_deep();
    n->lhs = std::move(lhs);
    n->rhs = std::move(rhs);
    return NodePtr(std::move(n));
  }

  // Guards recursion through parentheses and prefix operators.
  struct Guard {
    explicit Guard(int& d) : depth(d) { ++depth; }
    ~Guard() { --depth; }
    int& depth;
  };

  Expected<NodePtr> parse_or() {
    Guard g(rec_);
    if (rec_ > kMaxDepth) return too_deep();
    CPB_ASSIGN_OR_RETURN(NodePtr lhs, parse_and());
    while (at_op("or") || at_op("||")) {
      Token at = t_[pos_++];
      CPB_ASSIGN_OR_RETURN(NodePtr rhs, parse_and());
      CPB_ASSIGN_OR_RETURN(lhs, make(Op::or_, at, lhs, rhs));
    }
    return lhs;
  }

  Expected<NodePtr> parse_and() {
    CPB_ASSIGN_OR_RETURN(NodePtr lhs, parse_not());
    while (at_op("and") || at_op("&&")) {
      Token at = t_[pos_++];
      CPB_ASSIGN_OR_RETURN(NodePtr rhs, parse_not());
      CPB_ASSIGN_OR_RETURN(lhs, make(Op::and_, at, lhs, rhs));
    }
    return lhs;
  }

  Expected<NodePtr> parse_not() {
    if (at_op("not") || at_op("!")) {
      Guard g(rec_);
      if (rec_ > kMaxDepth) return too_deep();
      Token at = t_[pos_++];
      CPB_ASSIGN_OR_RETURN(NodePtr operand, parse_not());
      return make(Op::not_, at, operand, nullptr);
    }
    return parse_cmp();
  }

  Expected<NodePtr> parse_cmp() {
    CPB_ASSIGN_OR_RETURN(NodePtr lhs, parse_sum());
    if (peek().kind == Token::Kind::op && is_cmp(peek().text)) {
      Token at = t_[pos_++];
      Op op = at.text == "=="   ? Op::eq
              : at.text == "!=" ? Op::ne
              : at.text == "<"  ? Op::lt
              : at.text == "<=" ? Op::le
              : at.text == ">"  ? Op::gt
                                : Op::ge;
      CPB_ASSIGN_OR_RETURN(NodePtr rhs, parse_sum());
      return make(op, at, lhs, rhs);
    }
    return lhs;
  }

  Expected<NodePtr> parse_sum() {
    CPB_ASSIGN_OR_RETURN(NodePtr lhs, parse_product());
    while (at_op("+") || at_op("-")) {
      Token at = t_[pos_++];
      CPB_ASSIGN_OR_RETURN(NodePtr rhs, parse_product());
      CPB_ASSIGN_OR_RETURN(lhs, make(at.text == "+" ? Op::add : Op::sub, at, lhs, rhs));
    }
    return lhs;
  }

  Expected<NodePtr> parse_product() {
    CPB_ASSIGN_OR_RETURN(NodePtr lhs, parse_unary());
    while (at_op("*") || at_op("/") || at_op("%")) {
      Token at = t_[pos_++];
      Op op = at.text == "*" ? Op::mul : at.text == "/" ? Op::div : Op::mod;
      CPB_ASSIGN_OR_RETURN(NodePtr rhs, parse_unary());
      CPB_ASSIGN_OR_RETURN(lhs, make(op, at, lhs, rhs));
    }
    return lhs;
  }

  Expected<NodePtr> parse_unary() {
    if (at_op("-") || at_op("+")) {
      Guard g(rec_);
      if (rec_ > kMaxDepth) return too_deep();
      Token at = t_[pos_++];
      CPB_ASSIGN_OR_RETURN(NodePtr operand, parse_unary());
      return make(at.text == "-" ? Op::neg : Op::pos, at, operand, nullptr);
    }
    return parse_primary();
  }

  Expected<NodePtr> parse_primary() {
    const Token& t = peek();
    if (t.kind == Token::Kind::literal || t.kind == Token::Kind::name) {
      auto n = std::make_shared<ExprNode>();
      n->column = t.column;
      if (t.kind == Token::Kind::literal) {
        n->op = Op::literal;
        n->value = t.value;
      } else {
        n->op = Op::name;
        n->name = t.text;
        names.insert(t.text);
      }
      ++pos_;
      return NodePtr(std::move(n));
    }
    if (at_op("(")) {
      Token open = t_[pos_++];
      CPB_ASSIGN_OR_RETURN(NodePtr inner, parse_or());
      if (!at_op(")"))
        return err(peek(), fmt::format("expected ')' to close the '(' at column {}, got {}",
                                       open.column, peek_text()));
      ++pos_;
      return inner;
    }
    return err(t, fmt::format("expected a value, a name or '(', got {}", peek_text()));
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
  int rec_ = 0;
};

// ---- evaluation ---------------------------------------------------------------------------------

const char* type_name(const ParamValue& v) {
  switch (v.index()) {
    case 0:
      return "int";
    case 1:
      return "real";
    case 2:
      return "string";
    default:
      return "bool";
  }
}

std::string describe(const ParamValue& v) {
  if (auto* s = std::get_if<std::string>(&v)) return fmt::format("string '{}'", shown(*s));
  return fmt::format("{} {}", type_name(v), to_string(v));
}

bool is_number(const ParamValue& v) {
  return v.index() <= 1;
}
double as_real(const ParamValue& v) {
  return v.index() == 0 ? static_cast<double>(std::get<int64_t>(v)) : std::get<double>(v);
}

std::string list_keys(const std::set<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

Error unknown_name(const std::string& name, const std::set<std::string>* keys) {
  return CPB_ERROR(
      "unknown name '{}': a name must be a point key ({}) or a known value such as "
      "a strategy, layout or preset name; quote other strings ('{}')",
      shown(name), keys ? list_keys(*keys) : std::string("none"), shown(name));
}

class Evaluator {
 public:
  explicit Evaluator(const ExprScope& scope) : s_(scope) {
    if (!s_.keys && s_.values)
      for (const auto& [k, v] : *s_.values) own_keys_.insert(k);
  }

  Expected<ParamValue> eval(const ExprNode& n) {
    switch (n.op) {
      case Op::literal:
        return n.value;
      case Op::name:
        return lookup(n);
      case Op::neg:
      case Op::pos: {
        CPB_ASSIGN_OR_RETURN(ParamValue v, eval(*n.lhs));
        if (!is_number(v))
          return err(n, fmt::format("'{}' needs a number, got {}", n.symbol, describe(v)));
        if (n.op == Op::pos) return v;
        if (auto* i = std::get_if<int64_t>(&v)) {
          if (*i == INT64_MIN) return err(n, "integer overflow in '-'");
          return ParamValue(-*i);
        }
        return ParamValue(-std::get<double>(v));
      }
      case Op::not_: {
        CPB_ASSIGN_OR_RETURN(ParamValue v, eval(*n.lhs));
        if (auto* b = std::get_if<bool>(&v)) return ParamValue(!*b);
        return err(n, fmt::format("'{}' needs true or false, got {}", n.symbol, describe(v)));
      }
      case Op::and_:
      case Op::or_: {
        CPB_ASSIGN_OR_RETURN(ParamValue a, eval(*n.lhs));
        auto* ab = std::get_if<bool>(&a);
        if (!ab)
          return err(n, fmt::format("'{}' needs true or false on its left, got {}", n.symbol,
                                    describe(a)));
        // Short-circuit: the right side is not evaluated (nor can it fail) when decided.
        if (n.op == Op::and_ && !*ab) return ParamValue(false);
        if (n.op == Op::or_ && *ab) return ParamValue(true);
        CPB_ASSIGN_OR_RETURN(ParamValue b, eval(*n.rhs));
        auto* bb = std::get_if<bool>(&b);
        if (!bb)
          return err(n, fmt::format("'{}' needs true or false on its right, got {}", n.symbol,
                                    describe(b)));
        return ParamValue(*bb);
      }
      default:
        break;
    }
    CPB_ASSIGN_OR_RETURN(ParamValue a, eval(*n.lhs));
    CPB_ASSIGN_OR_RETURN(ParamValue b, eval(*n.rhs));
    switch (n.op) {
      case Op::eq:
      case Op::ne:
      case Op::lt:
      case Op::le:
      case Op::gt:
      case Op::ge:
        // A word that is both a key and a symbol (the key `ulysses`, the strategy `ulysses`)
        // means the symbol when it is compared with a string: `strategy == ulysses`.
        if (a.index() == 2 && b.index() != 2) symbol_instead(*n.rhs, b);
        if (b.index() == 2 && a.index() != 2) symbol_instead(*n.lhs, a);
        return compare(n, a, b);
      default:
        return arith(n, a, b);
    }
  }

 private:
  Error err(const ExprNode& n, const std::string& msg) const {
    return CPB_ERROR("at column {}: {}", n.column, msg);
  }

  void symbol_instead(const ExprNode& n, ParamValue& v) const {
    if (n.op == Op::name && s_.symbols && s_.symbols->count(n.name)) v = n.name;
  }

  Expected<ParamValue> lookup(const ExprNode& n) {
    if (s_.values) {
      auto it = s_.values->find(n.name);
      if (it != s_.values->end()) return it->second;
    }
    const std::set<std::string>* keys = s_.keys ? s_.keys : &own_keys_;
    if (keys->count(n.name)) return err(n, fmt::format("'{}' is not set on this point", n.name));
    if (s_.symbols && s_.symbols->count(n.name)) return ParamValue(n.name);
    Error e = unknown_name(n.name, keys);
    e.message = fmt::format("at column {}: {}", n.column, e.message);
    return e;
  }

  Expected<ParamValue> compare(const ExprNode& n, const ParamValue& a, const ParamValue& b) {
    int c = 0;  // <0, 0, >0
    if (is_number(a) && is_number(b)) {
      if (a.index() == 0 && b.index() == 0) {
        int64_t x = std::get<int64_t>(a), y = std::get<int64_t>(b);
        c = x < y ? -1 : x > y ? 1 : 0;
      } else {
        double x = as_real(a), y = as_real(b);
        c = x < y ? -1 : x > y ? 1 : 0;
      }
    } else if (a.index() == 2 && b.index() == 2) {
      int r = std::get<std::string>(a).compare(std::get<std::string>(b));
      c = r < 0 ? -1 : r > 0 ? 1 : 0;
    } else if (a.index() == 3 && b.index() == 3 && (n.op == Op::eq || n.op == Op::ne)) {
      c = std::get<bool>(a) == std::get<bool>(b) ? 0 : 1;
    } else {
      std::string hint;
      if (a.index() == 2 || b.index() == 2) hint = ": compare strings with strings ('x')";
      if (a.index() == 3 && b.index() == 3) hint = ": bools compare only with == and !=";
      return err(n, fmt::format("cannot compare {} with {} using '{}'{}", describe(a), describe(b),
                                n.symbol, hint));
    }
    switch (n.op) {
      case Op::eq:
        return ParamValue(c == 0);
      case Op::ne:
        return ParamValue(c != 0);
      case Op::lt:
        return ParamValue(c < 0);
      case Op::le:
        return ParamValue(c <= 0);
      case Op::gt:
        return ParamValue(c > 0);
      default:
        return ParamValue(c >= 0);
    }
  }

  Expected<ParamValue> arith(const ExprNode& n, const ParamValue& a, const ParamValue& b) {
    if (!is_number(a) || !is_number(b))
      return err(
          n, fmt::format("'{}' needs numbers, got {} and {}", n.symbol, describe(a), describe(b)));
    bool ints = a.index() == 0 && b.index() == 0;
    if (n.op == Op::mod) {
      if (!ints)
        return err(n, fmt::format("'%' needs integers, got {} and {}", describe(a), describe(b)));
      int64_t x = std::get<int64_t>(a), y = std::get<int64_t>(b);
      if (y == 0) return err(n, fmt::format("remainder by zero in {} % 0", x));
      if (y == -1) return ParamValue(int64_t{0});  // INT64_MIN % -1 traps on x86
      return ParamValue(x % y);
    }
    if (n.op == Op::div) {
      double y = as_real(b);
      if (y == 0)
        return err(n, fmt::format("division by zero in {} / {}", to_string(a), to_string(b)));
      return finite(n, as_real(a) / y);
    }
    if (ints) {
      int64_t x = std::get<int64_t>(a), y = std::get<int64_t>(b), r = 0;
      bool over = n.op == Op::add   ? __builtin_add_overflow(x, y, &r)
                  : n.op == Op::sub ? __builtin_sub_overflow(x, y, &r)
                                    : __builtin_mul_overflow(x, y, &r);
      if (over) return err(n, fmt::format("integer overflow in {} {} {}", x, n.symbol, y));
      return ParamValue(r);
    }
    double x = as_real(a), y = as_real(b);
    return finite(n, n.op == Op::add ? x + y : n.op == Op::sub ? x - y : x * y);
  }

  Expected<ParamValue> finite(const ExprNode& n, double v) {
    if (!std::isfinite(v)) return err(n, fmt::format("'{}' overflows to {}", n.symbol, v));
    return ParamValue(v);
  }

  const ExprScope& s_;
  std::set<std::string> own_keys_;
};

}  // namespace

Expected<Expr> parse_expr(std::string_view text, const std::set<std::string>& symbols) {
  auto wrap = [&](Error e) {
    e.message = fmt::format("in '{}': {}", shown(text), e.message);
    return e;
  };
  Lexer lexer(text, symbols);
  auto tokens = lexer.run();
  if (!tokens) return wrap(std::move(tokens).error());
  if (tokens->size() == 1) return wrap(CPB_ERROR("the expression is empty"));
  Parser parser(std::move(tokens).value());
  auto root = parser.run();
  if (!root) return wrap(std::move(root).error());
  return Expr(std::move(root).value(), std::string(text), std::move(parser.names));
}

Status check_expr_names(const Expr& e, const std::set<std::string>& keys,
                        const std::set<std::string>& symbols) {
  for (const auto& n : e.names()) {
    if (keys.count(n) || symbols.count(n)) continue;
    Error err = unknown_name(n, &keys);
    err.message = fmt::format("in '{}': {}", shown(e.text()), err.message);
    return err;
  }
  return {};
}

Expected<ParamValue> eval_expr(const Expr& e, const ExprScope& scope) {
  if (!e.root()) return CPB_ERROR("the expression is empty");
  Evaluator ev(scope);
  auto v = ev.eval(*e.root());
  if (!v) {
    Error err = std::move(v).error();
    err.message = fmt::format("in '{}': {}", shown(e.text()), err.message);
    return err;
  }
  return v;
}

Expected<bool> eval_bool(const Expr& e, const ExprScope& scope) {
  CPB_ASSIGN_OR_RETURN(ParamValue v, eval_expr(e, scope));
  if (auto* b = std::get_if<bool>(&v)) return *b;
  return CPB_ERROR(
      "in '{}': the expression gives {}, not true or false: use a comparison such "
      "as cp >= 2",
      shown(e.text()), describe(v));
}

}  // namespace cpb
