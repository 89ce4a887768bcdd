// Recursive descent over the tokens, following Jinja2's grammar and operator precedence:
// conditional < or < and < not < comparison < + - < ~ < * / // % < ** < unary - + < postfix,
// filters and tests. Left-associative like Jinja2, so 2 ** 3 ** 2 is 64.
#include <algorithm>
#include <initializer_list>

#include "host/text/jinja_ast.h"

namespace fi::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const Limits& limits) : tokens_(std::move(tokens)), limits_(limits) {}

  std::unique_ptr<Program> parse_template() {
    auto program = std::make_unique<Program>();
    std::string ended_with;
    program->body = parse_body({}, ended_with);
    return program;
  }

 private:
  // Counts nesting while parsing one construct; refuses templates nested past the limit.
  class Nesting {
   public:
    Nesting(Parser& parser, SourcePos pos) : parser_(parser) {
      if (++parser_.nesting_ > parser_.limits_.max_nesting_depth)
        syntax_error(pos, "nested more than " + std::to_string(parser_.limits_.max_nesting_depth) + " levels deep");
    }
    ~Nesting() { --parser_.nesting_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    Parser& parser_;
  };

  struct MacroContext {
    MacroDefinition* macro;
    int saved_loop_depth;
  };

  const Token& current() const { return tokens_[index_]; }
  const Token& peek() const { return tokens_[std::min(index_ + 1, tokens_.size() - 1)]; }
  void advance() {
    if (index_ + 1 < tokens_.size()) ++index_;
  }
  bool is_op(std::string_view op) const { return current().type == TokenType::Operator && current().text == op; }
  bool is_name(std::string_view name) const { return current().type == TokenType::Name && current().text == name; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& token) {
    switch (token.type) {
      case TokenType::Data: return "template text";
      case TokenType::VariableBegin: return "'{{'";
      case TokenType::VariableEnd: return "end of print statement";
      case TokenType::BlockBegin: return "'{%'";
      case TokenType::BlockEnd: return "end of statement block";
      case TokenType::String: return "string";
      case TokenType::Integer: return "integer";
      case TokenType::Float: return "float";
      case TokenType::End: return "end of template";
      default: return quote(token.text);
    }
  }

  [[noreturn]] void unexpected(const std::string& expected) const {
    syntax_error(current().pos, "expected " + expected + ", got " + describe(current()));
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) unexpected(quote(std::string(op)));
  }
  std::string expect_name() {
    if (current().type != TokenType::Name) unexpected("a name");
    std::string name = current().text;
    advance();
    return name;
  }
  void expect_block_end() {
    if (current().type != TokenType::BlockEnd) unexpected("end of statement block");
    advance();
  }

  template <typename Node>
  ExprPtr finish(std::unique_ptr<Node> node, std::initializer_list<const Expr*> children) {
    for (const Expr* child : children)
      if (child) node->depth = std::max(node->depth, child->depth + 1);
    // Binary operator chains and filter chains nest without recursing in the parser; their depth
    // is bounded here so evaluating and freeing the tree cannot exhaust the stack.
    if (node->depth > 8 * limits_.max_nesting_depth) syntax_error(node->pos, "expression nested too deeply");
    return node;
  }

  // ---- statements ----

  // Statements up to a {% tag %} named in end_tags (left unconsumed, its name in ended_with), or
  // to the end of the template when end_tags is empty.
  Body parse_body(std::initializer_list<std::string_view> end_tags, std::string& ended_with, SourcePos opened_at = {},
                  std::string_view opened_by = "") {
    Body body;
    while (true) {
      const Token& token = current();
      switch (token.type) {
        case TokenType::Data:
          body.push_back(std::make_unique<TextStmt>(token.pos, token.text));
          advance();
          break;
        case TokenType::VariableBegin: {
          const SourcePos pos = token.pos;
          advance();
          ExprPtr value = parse_tuple(false, true, {}, false);
          if (current().type != TokenType::VariableEnd) unexpected("end of print statement");
          advance();
          body.push_back(std::make_unique<OutputStmt>(pos, std::move(value)));
          break;
        }
        case TokenType::BlockBegin: {
          advance();
          if (current().type != TokenType::Name) unexpected("a tag name");
          if (std::find(end_tags.begin(), end_tags.end(), current().text) != end_tags.end()) {
            ended_with = current().text;
            return body;
          }
          body.push_back(parse_statement(token.pos));
          break;
        }
        case TokenType::End:
          if (end_tags.size() == 0) return body;
          {
            std::string wanted;
            for (std::string_view tag : end_tags) wanted += (wanted.empty() ? "'" : " or '") + std::string(tag) + "'";
            syntax_error(opened_at, "unexpected end of template: the '" + std::string(opened_by) + "' block here was not closed (" +
                                        wanted + " expected)");
          }
        default: unexpected("a statement");
      }
    }
  }

  // The body of a block that opened at `pos`, through its end tag (name and %}).
  Body parse_block(std::initializer_list<std::string_view> end_tags, std::string& ended_with, SourcePos pos, std::string_view opened_by) {
    Body body = parse_body(end_tags, ended_with, pos, opened_by);
    advance();
    return body;
  }

  StmtPtr parse_statement(SourcePos pos) {
    Nesting nesting(*this, pos);
    const std::string keyword = current().text;
    if (keyword == "for") return parse_for(pos);
    if (keyword == "if") return parse_if(pos);
    if (keyword == "set") return parse_set(pos);
    if (keyword == "macro") return parse_macro(pos);
    if (keyword == "call") return parse_call_block(pos);
    if (keyword == "filter") return parse_filter_block(pos);
    if (keyword == "with" || keyword == "generation" || keyword == "block") return parse_scope(pos, keyword);
    if (keyword == "print") {
      advance();
      ExprPtr value = parse_tuple(false, true, {}, false);
      expect_block_end();
      return std::make_unique<OutputStmt>(pos, std::move(value));
    }
    if (keyword == "break" || keyword == "continue") {
      if (loop_depth_ == 0) syntax_error(current().pos, quote(keyword) + " outside loop");
      advance();
      expect_block_end();
      return std::make_unique<Stmt>(keyword == "break" ? StmtKind::Break : StmtKind::Continue, pos);
    }
    if (keyword == "include" || keyword == "import" || keyword == "from" || keyword == "extends")
      syntax_error(current().pos, quote(keyword) + " is not supported: a chat template may not load other templates");
    if (keyword == "autoescape") syntax_error(current().pos, "'autoescape' blocks are not supported");
    syntax_error(current().pos, "unknown tag '" + keyword + "'");
  }

  StmtPtr parse_for(SourcePos pos) {
    advance();
    auto node = std::make_unique<ForStmt>(pos);
    node->target = parse_assign_target({"in"});
    if (!skip_name("in")) unexpected("'in'");
    node->iterable = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) node->filter = parse_expression(true);
    if (is_name("recursive")) syntax_error(current().pos, "recursive loops are not supported");
    expect_block_end();
    std::string ended_with;
    ++loop_depth_;
    node->body = parse_block({"endfor", "else"}, ended_with, pos, "for");
    --loop_depth_;
    if (ended_with == "else") {
      expect_block_end();
      node->else_body = parse_block({"endfor"}, ended_with, pos, "for");
    }
    expect_block_end();
    return node;
  }

  StmtPtr parse_if(SourcePos pos) {
    advance();
    auto node = std::make_unique<IfStmt>(pos);
    std::string ended_with;
    while (true) {
      ExprPtr condition = parse_tuple(false, false, {}, false);
      expect_block_end();
      Body body = parse_block({"elif", "else", "endif"}, ended_with, pos, "if");
      node->branches.emplace_back(std::move(condition), std::move(body));
      if (ended_with != "elif") break;
    }
    if (ended_with == "else") {
      expect_block_end();
      node->else_body = parse_block({"endif"}, ended_with, pos, "if");
    }
    expect_block_end();
    return node;
  }

  StmtPtr parse_set(SourcePos pos) {
    advance();
    Target target = parse_assign_target({}, true);
    if (skip_op("=")) {
      auto node = std::make_unique<SetStmt>(pos);
      node->target = std::move(target);
      node->value = parse_tuple(false, true, {}, false);
      expect_block_end();
      return node;
    }
    if (target.is_tuple) syntax_error(target.pos, "a block set assigns one name");
    auto node = std::make_unique<SetBlockStmt>(pos);
    node->target = std::move(target);
    if (is_op("|")) {
      advance();
      node->filter = parse_filter(nullptr, true);
    }
    expect_block_end();
    std::string ended_with;
    node->body = parse_block({"endset"}, ended_with, pos, "set");
    expect_block_end();
    return node;
  }

  void parse_signature(MacroDefinition& macro) {
    expect_op("(");
    while (!is_op(")")) {
      if (!macro.parameters.empty()) expect_op(",");
      const SourcePos where = current().pos;
      std::string name = expect_name();
      check_assignable(name, where);
      ExprPtr default_value;
      if (skip_op("="))
        default_value = parse_expression(true);
      else if (!macro.parameters.empty() && macro.parameters.back().second)
        syntax_error(where, "non-default argument follows default argument");
      macro.parameters.emplace_back(std::move(name), std::move(default_value));
    }
    advance();
  }

  // A macro or caller body: loops outside do not extend into it.
  Body parse_macro_body(MacroDefinition& macro, std::initializer_list<std::string_view> end_tags, SourcePos pos, std::string_view opened_by) {
    macros_.push_back({&macro, loop_depth_});
    loop_depth_ = 0;
    std::string ended_with;
    Body body = parse_block(end_tags, ended_with, pos, opened_by);
    loop_depth_ = macros_.back().saved_loop_depth;
    macros_.pop_back();
    expect_block_end();
    return body;
  }

  StmtPtr parse_macro(SourcePos pos) {
    advance();
    auto macro = std::make_shared<MacroDefinition>();
    const SourcePos where = current().pos;
    macro->name = expect_name();
    check_assignable(macro->name, where);
    parse_signature(*macro);
    expect_block_end();
    macro->body = parse_macro_body(*macro, {"endmacro"}, pos, "macro");
    auto node = std::make_unique<MacroStmt>(pos);
    node->macro = std::move(macro);
    return node;
  }

  StmtPtr parse_call_block(SourcePos pos) {
    advance();
    auto caller = std::make_shared<MacroDefinition>();
    caller->name = "caller";
    if (is_op("(")) parse_signature(*caller);
    auto node = std::make_unique<CallBlockStmt>(pos);
    node->call = parse_expression(true);
    if (node->call->kind != ExprKind::Call) syntax_error(node->call->pos, "expected a call after 'call'");
    expect_block_end();
    caller->body = parse_macro_body(*caller, {"endcall"}, pos, "call");
    node->caller = std::move(caller);
    return node;
  }

  StmtPtr parse_filter_block(SourcePos pos) {
    advance();
    auto node = std::make_unique<FilterBlockStmt>(pos);
    node->filter = parse_filter(nullptr, true);
    expect_block_end();
    std::string ended_with;
    node->body = parse_block({"endfilter"}, ended_with, pos, "filter");
    expect_block_end();
    return node;
  }

  StmtPtr parse_scope(SourcePos pos, const std::string& keyword) {
    advance();
    auto node = std::make_unique<ScopeStmt>(pos);
    if (keyword == "block") {
      expect_name();
      skip_name("scoped");
      skip_name("required");
    } else if (keyword == "with") {
      while (current().type != TokenType::BlockEnd) {
        if (!node->assignments.empty()) expect_op(",");
        Target target = parse_assign_target({});
        expect_op("=");
        node->assignments.emplace_back(std::move(target), parse_expression(true));
      }
    }
    expect_block_end();
    std::string ended_with;
    const std::string end_tag = "end" + keyword;
    node->body = parse_block({end_tag}, ended_with, pos, keyword);
    if (keyword == "block" && current().type == TokenType::Name) advance();
    expect_block_end();
    return node;
  }

  // ---- assignment targets ----

  static void check_assignable(const std::string& name, SourcePos pos) {
    static const char* const kConstants[] = {"true", "false", "none", "True", "False", "None"};
    for (const char* constant : kConstants)
      if (name == constant) syntax_error(pos, "cannot assign to '" + name + "'");
  }

  Target parse_target_element() {
    Target target;
    target.pos = current().pos;
    if (current().type == TokenType::Name) {
      target.name = current().text;
      check_assignable(target.name, target.pos);
      advance();
      return target;
    }
    if (skip_op("(")) {
      Nesting nesting(*this, target.pos);
      target.is_tuple = true;
      while (!is_op(")")) {
        if (!target.elements.empty()) expect_op(",");
        if (is_op(")")) break;
        target.elements.push_back(parse_target_element());
      }
      advance();
      return target;
    }
    syntax_error(target.pos, "cannot assign to " + describe(current()));
  }

  Target parse_assign_target(std::initializer_list<std::string_view> extra_end, bool with_namespace = false) {
    if (with_namespace && current().type == TokenType::Name && peek().type == TokenType::Operator && peek().text == ".") {
      Target target;
      target.pos = current().pos;
      target.name = current().text;
      advance();
      advance();
      target.attribute = expect_name();
      return target;
    }
    Target tuple;
    tuple.pos = current().pos;
    while (true) {
      if (!tuple.elements.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      tuple.elements.push_back(parse_target_element());
      if (!is_op(",")) break;
      tuple.is_tuple = true;
    }
    if (tuple.elements.empty()) unexpected("an assignment target");
    if (!tuple.is_tuple) return std::move(tuple.elements[0]);
    return tuple;
  }

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
    if (current().type == TokenType::VariableEnd || current().type == TokenType::BlockEnd || is_op(")")) return true;
    return current().type == TokenType::Name && std::find(extra_end.begin(), extra_end.end(), current().text) != extra_end.end();
  }

  // Comma-separated expressions: one expression alone, or a tuple.
  ExprPtr parse_tuple(bool simplified, bool with_condexpr, std::initializer_list<std::string_view> extra_end, bool explicit_parentheses) {
    const SourcePos pos = current().pos;
    auto tuple = std::make_unique<SequenceExpr>(ExprKind::Tuple, pos);
    bool is_tuple = false;
    while (true) {
      if (!tuple->items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      tuple->items.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (!is_op(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!tuple->items.empty()) return std::move(tuple->items[0]);
      if (!explicit_parentheses) unexpected("an expression");
    }
    return finish_sequence(std::move(tuple));
  }

  ExprPtr finish_sequence(std::unique_ptr<SequenceExpr> node) {
    for (const ExprPtr& item : node->items) node->depth = std::max(node->depth, item->depth + 1);
    return finish(std::move(node), {});
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Nesting nesting(*this, current().pos);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr value = parse_or();
    while (is_name("if")) {
      auto node = std::make_unique<ConditionalExpr>(current().pos);
      advance();
      node->condition = parse_or();
      if (skip_name("else")) node->else_value = parse_condexpr();
      node->then_value = std::move(value);
      const Expr *a = node->condition.get(), *b = node->then_value.get(), *c = node->else_value.get();
      value = finish(std::move(node), {a, b, c});
    }
    return value;
  }

  ExprPtr logical(ExprKind kind, SourcePos pos, ExprPtr left, ExprPtr right) {
    const Expr *a = left.get(), *b = right.get();
    return finish(std::make_unique<BinaryExpr>(kind, pos, BinaryOp::Add, std::move(left), std::move(right)), {a, b});
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const SourcePos pos = current().pos;
      advance();
      left = logical(ExprKind::Or, pos, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const SourcePos pos = current().pos;
      advance();
      left = logical(ExprKind::And, pos, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const SourcePos pos = current().pos;
      Nesting nesting(*this, pos);
      advance();
      ExprPtr operand = parse_not();
      const Expr* child = operand.get();
      return finish(std::make_unique<UnaryExpr>(ExprKind::Not, pos, std::move(operand)), {child});
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const SourcePos pos = current().pos;
    ExprPtr first = parse_math1();
    auto node = std::make_unique<CompareExpr>(pos, nullptr);
    while (true) {
      CompareOp op;
      if (is_op("==")) {
        op = CompareOp::Equal;
      } else if (is_op("!=")) {
        op = CompareOp::NotEqual;
      } else if (is_op("<")) {
        op = CompareOp::Less;
      } else if (is_op("<=")) {
        op = CompareOp::LessEqual;
      } else if (is_op(">")) {
        op = CompareOp::Greater;
      } else if (is_op(">=")) {
        op = CompareOp::GreaterEqual;
      } else if (is_name("in")) {
        op = CompareOp::In;
      } else if (is_name("not") && peek().type == TokenType::Name && peek().text == "in") {
        advance();
        op = CompareOp::NotIn;
      } else {
        break;
      }
      advance();
      node->rest.emplace_back(op, parse_math1());
    }
    if (node->rest.empty()) return first;
    node->depth = first->depth + 1;
    for (const auto& [op, operand] : node->rest) node->depth = std::max(node->depth, operand->depth + 1);
    node->first = std::move(first);
    return finish(std::move(node), {});
  }

  ExprPtr binary(BinaryOp op, SourcePos pos, ExprPtr left, ExprPtr right) {
    const Expr *a = left.get(), *b = right.get();
    return finish(std::make_unique<BinaryExpr>(ExprKind::Binary, pos, op, std::move(left), std::move(right)), {a, b});
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const BinaryOp op = is_op("+") ? BinaryOp::Add : BinaryOp::Subtract;
      const SourcePos pos = current().pos;
      advance();
      left = binary(op, pos, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const SourcePos pos = current().pos;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto node = std::make_unique<ConcatExpr>(pos);
    node->parts.push_back(std::move(first));
    while (skip_op("~")) node->parts.push_back(parse_math2());
    for (const ExprPtr& part : node->parts) node->depth = std::max(node->depth, part->depth + 1);
    return finish(std::move(node), {});
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (true) {
      BinaryOp op;
      if (is_op("*")) {
        op = BinaryOp::Multiply;
      } else if (is_op("/")) {
        op = BinaryOp::Divide;
      } else if (is_op("//")) {
        op = BinaryOp::FloorDivide;
      } else if (is_op("%")) {
        op = BinaryOp::Modulo;
      } else {
        return left;
      }
      const SourcePos pos = current().pos;
      advance();
      left = binary(op, pos, std::move(left), parse_pow());
    }
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const SourcePos pos = current().pos;
      advance();
      left = binary(BinaryOp::Power, pos, std::move(left), parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const SourcePos pos = current().pos;
    Nesting nesting(*this, pos);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const ExprKind kind = is_op("-") ? ExprKind::Negate : ExprKind::Plus;
      advance();
      ExprPtr operand = parse_unary(false);
      const Expr* child = operand.get();
      node = finish(std::make_unique<UnaryExpr>(kind, pos, std::move(operand)), {child});
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& token = current();
    const SourcePos pos = token.pos;
    switch (token.type) {
      case TokenType::Name: {
        const std::string name = token.text;
        advance();
        if (name == "true" || name == "True") return std::make_unique<LiteralExpr>(pos, Value::boolean(true));
        if (name == "false" || name == "False") return std::make_unique<LiteralExpr>(pos, Value::boolean(false));
        if (name == "none" || name == "None") return std::make_unique<LiteralExpr>(pos, Value::none());
        if (!macros_.empty()) {
          macros_.back().macro->uses_varargs = macros_.back().macro->uses_varargs || name == "varargs";
          macros_.back().macro->uses_kwargs = macros_.back().macro->uses_kwargs || name == "kwargs";
        }
        return std::make_unique<NameExpr>(pos, name);
      }
      case TokenType::String: {
        std::string text;
        while (current().type == TokenType::String) {
          text += current().text;
          advance();
        }
        return std::make_unique<LiteralExpr>(pos, Value::string(std::move(text)));
      }
      case TokenType::Integer: {
        const int64_t value = token.integer;
        advance();
        return std::make_unique<LiteralExpr>(pos, Value::integer(value));
      }
      case TokenType::Float: {
        const double value = token.number;
        advance();
        return std::make_unique<LiteralExpr>(pos, Value::number(value));
      }
      case TokenType::Operator:
        if (token.text == "(") {
          advance();
          ExprPtr inner = parse_tuple(false, true, {}, true);
          expect_op(")");
          return inner;
        }
        if (token.text == "[") return parse_list();
        if (token.text == "{") return parse_dict();
        [[fallthrough]];
      default: syntax_error(pos, "unexpected " + describe(token));
    }
  }

  ExprPtr parse_list() {
    auto node = std::make_unique<SequenceExpr>(ExprKind::List, current().pos);
    advance();
    while (!is_op("]")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("]")) break;
      node->items.push_back(parse_expression(true));
    }
    advance();
    return finish_sequence(std::move(node));
  }

  ExprPtr parse_dict() {
    auto node = std::make_unique<DictExpr>(current().pos);
    advance();
    while (!is_op("}")) {
      if (!node->entries.empty()) expect_op(",");
      if (is_op("}")) break;
      ExprPtr key = parse_expression(true);
      expect_op(":");
      ExprPtr value = parse_expression(true);
      node->depth = std::max({node->depth, key->depth + 1, value->depth + 1});
      node->entries.emplace_back(std::move(key), std::move(value));
    }
    advance();
    return finish(std::move(node), {});
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        advance();
        node = parse_filter(std::move(node), true);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object) {
    const SourcePos pos = current().pos;
    const Expr* child = object.get();
    if (skip_op(".")) {
      if (current().type == TokenType::Name) {
        std::string name = current().text;
        advance();
        return finish(std::make_unique<AttributeExpr>(pos, std::move(object), std::move(name)), {child});
      }
      if (current().type == TokenType::Integer) {
        auto index = std::make_unique<LiteralExpr>(current().pos, Value::integer(current().integer));
        advance();
        return finish(std::make_unique<ItemExpr>(pos, std::move(object), std::move(index)), {child});
      }
      unexpected("a name or number after '.'");
    }
    expect_op("[");
    std::vector<ExprPtr> indices;
    std::unique_ptr<SliceExpr> slice;
    while (!is_op("]")) {
      if (!indices.empty() || slice) expect_op(",");
      ExprPtr start;
      if (!is_op(":")) start = parse_expression(true);
      if (!is_op(":")) {
        if (slice) syntax_error(pos, "slices inside a tuple subscript are not supported");
        indices.push_back(std::move(start));
        continue;
      }
      if (slice || !indices.empty()) syntax_error(pos, "slices inside a tuple subscript are not supported");
      advance();
      slice = std::make_unique<SliceExpr>(pos);
      slice->start = std::move(start);
      if (!is_op("]") && !is_op(",") && !is_op(":")) slice->stop = parse_expression(true);
      if (skip_op(":") && !is_op("]") && !is_op(",")) slice->step = parse_expression(true);
    }
    advance();
    if (slice) {
      if (!indices.empty()) syntax_error(pos, "slices inside a tuple subscript are not supported");
      const Expr *a = slice->start.get(), *b = slice->stop.get(), *c = slice->step.get();
      slice->object = std::move(object);
      return finish(std::move(slice), {child, a, b, c});
    }
    if (indices.empty()) syntax_error(pos, "expected a subscript");
    ExprPtr index;
    if (indices.size() == 1) {
      index = std::move(indices[0]);
    } else {
      auto tuple = std::make_unique<SequenceExpr>(ExprKind::Tuple, pos);
      tuple->items = std::move(indices);
      index = finish_sequence(std::move(tuple));
    }
    const Expr* index_node = index.get();
    return finish(std::make_unique<ItemExpr>(pos, std::move(object), std::move(index)), {child, index_node});
  }

  // (positional..., name=value...) into `arguments`; returns the deepest argument's depth.
  int parse_arguments(Arguments& arguments) {
    expect_op("(");
    int depth = 0;
    bool need_comma = false;
    while (!is_op(")")) {
      if (need_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) syntax_error(current().pos, "*args and **kwargs in calls are not supported");
      if (current().type == TokenType::Name && peek().type == TokenType::Operator && peek().text == "=") {
        std::string name = current().text;
        advance();
        advance();
        ExprPtr value = parse_expression(true);
        depth = std::max(depth, value->depth);
        arguments.keyword.emplace_back(std::move(name), std::move(value));
      } else {
        if (!arguments.keyword.empty()) syntax_error(current().pos, "positional argument follows keyword argument");
        ExprPtr value = parse_expression(true);
        depth = std::max(depth, value->depth);
        arguments.positional.push_back(std::move(value));
      }
      need_comma = true;
    }
    advance();
    return depth;
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto node = std::make_unique<CallExpr>(current().pos, std::move(callee));
    node->depth = std::max(node->callee->depth, parse_arguments(node->arguments)) + 1;
    return finish(std::move(node), {});
  }

  // name(args) | name(args) ...; the first name is read without a leading '|'.
  ExprPtr parse_filter(ExprPtr operand, bool first_inline) {
    while (first_inline || is_op("|")) {
      if (!first_inline) advance();
      first_inline = false;
      const SourcePos pos = current().pos;
      std::string name = expect_name();
      while (skip_op(".")) name.append(".").append(expect_name());
      auto node = std::make_unique<FilterExpr>(pos, std::move(operand), std::move(name));
      int depth = node->operand ? node->operand->depth : 0;
      if (is_op("(")) depth = std::max(depth, parse_arguments(node->arguments));
      node->depth = depth + 1;
      operand = finish(std::move(node), {});
    }
    return operand;
  }

  ExprPtr parse_test(ExprPtr operand) {
    const SourcePos pos = current().pos;
    advance();
    const bool negated = skip_name("not");
    std::string name = expect_name();
    while (skip_op(".")) name.append(".").append(expect_name());
    auto node = std::make_unique<TestExpr>(pos, std::move(operand), std::move(name));
    node->negated = negated;
    int depth = node->operand->depth;
    const TokenType type = current().type;
    if (is_op("(")) {
      depth = std::max(depth, parse_arguments(node->arguments));
    } else if ((type == TokenType::Name || type == TokenType::String || type == TokenType::Integer || type == TokenType::Float ||
                is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
      if (is_name("is")) syntax_error(current().pos, "tests cannot be chained with 'is'");
      ExprPtr argument = parse_postfix(parse_primary());
      depth = std::max(depth, argument->depth);
      node->arguments.positional.push_back(std::move(argument));
    }
    node->depth = depth + 1;
    return finish(std::move(node), {});
  }

  std::vector<Token> tokens_;
  size_t index_ = 0;
  const Limits& limits_;
  int nesting_ = 0;
  int loop_depth_ = 0;
  std::vector<MacroContext> macros_;
};

}  // namespace

std::unique_ptr<Program> parse(std::string_view source, const Limits& limits, const Syntax& syntax) {
  if (source.size() > limits.max_template_bytes)
    throw TemplateError("chat template is " + std::to_string(source.size()) + " bytes, more than the limit of " +
                        std::to_string(limits.max_template_bytes));
  return Parser(tokenize(source, syntax), limits).parse_template();
}

}  // namespace fi::jinja
