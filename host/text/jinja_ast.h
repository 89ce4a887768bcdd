#pragma once
// The syntax tree the parser builds and the evaluator walks. Every node records where it starts in
// the source, for error messages.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "host/text/jinja_lexer.h"
#include "host/text/jinja_value.h"

namespace fi::jinja {

enum class ExprKind {
  Literal, Name, List, Tuple, Dict, Attribute, Item, Slice, Call, Filter, Test,
  Not, Negate, Plus, Binary, And, Or, Compare, Concat, Conditional
};

struct Expr {
  Expr(ExprKind kind, SourcePos pos) : kind(kind), pos(pos) {}
  virtual ~Expr() = default;
  ExprKind kind;
  SourcePos pos;
  int depth = 1;  // of the subtree, bounded by Limits::max_nesting_depth
};
using ExprPtr = std::unique_ptr<Expr>;

struct LiteralExpr : Expr {
  LiteralExpr(SourcePos pos, Value value) : Expr(ExprKind::Literal, pos), value(std::move(value)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(SourcePos pos, std::string name) : Expr(ExprKind::Name, pos), name(std::move(name)) {}
  std::string name;
};

struct SequenceExpr : Expr {  // List or Tuple
  using Expr::Expr;
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  explicit DictExpr(SourcePos pos) : Expr(ExprKind::Dict, pos) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> entries;
};

struct AttributeExpr : Expr {  // object.name
  AttributeExpr(SourcePos pos, ExprPtr object, std::string name)
      : Expr(ExprKind::Attribute, pos), object(std::move(object)), name(std::move(name)) {}
  ExprPtr object;
  std::string name;
};

struct ItemExpr : Expr {  // object[index]
  ItemExpr(SourcePos pos, ExprPtr object, ExprPtr index) : Expr(ExprKind::Item, pos), object(std::move(object)), index(std::move(index)) {}
  ExprPtr object, index;
};

struct SliceExpr : Expr {  // object[start:stop:step], each part optional
  explicit SliceExpr(SourcePos pos) : Expr(ExprKind::Slice, pos) {}
  ExprPtr object, start, stop, step;
};

struct Arguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct CallExpr : Expr {
  CallExpr(SourcePos pos, ExprPtr callee) : Expr(ExprKind::Call, pos), callee(std::move(callee)) {}
  ExprPtr callee;
  Arguments arguments;
};

// operand | name(arguments). The operand is null at the start of the filter chain of a filter
// block or block set, which filters the rendered body.
struct FilterExpr : Expr {
  FilterExpr(SourcePos pos, ExprPtr operand, std::string name)
      : Expr(ExprKind::Filter, pos), operand(std::move(operand)), name(std::move(name)) {}
  ExprPtr operand;
  std::string name;
  Arguments arguments;
};

struct TestExpr : Expr {  // operand is [not] name(arguments)
  TestExpr(SourcePos pos, ExprPtr operand, std::string name)
      : Expr(ExprKind::Test, pos), operand(std::move(operand)), name(std::move(name)) {}
  ExprPtr operand;
  std::string name;
  Arguments arguments;
  bool negated = false;
};

struct UnaryExpr : Expr {  // Not, Negate, Plus
  UnaryExpr(ExprKind kind, SourcePos pos, ExprPtr operand) : Expr(kind, pos), operand(std::move(operand)) {}
  ExprPtr operand;
};

enum class BinaryOp { Add, Subtract, Multiply, Divide, FloorDivide, Modulo, Power };

struct BinaryExpr : Expr {  // Binary (with op), And, Or
  BinaryExpr(ExprKind kind, SourcePos pos, BinaryOp op, ExprPtr left, ExprPtr right)
      : Expr(kind, pos), op(op), left(std::move(left)), right(std::move(right)) {}
  BinaryOp op;
  ExprPtr left, right;
};

enum class CompareOp { Equal, NotEqual, Less, LessEqual, Greater, GreaterEqual, In, NotIn };

struct CompareExpr : Expr {  // first op1 x1 op2 x2 ...: chained as Python chains comparisons
  CompareExpr(SourcePos pos, ExprPtr first) : Expr(ExprKind::Compare, pos), first(std::move(first)) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> rest;
};

struct ConcatExpr : Expr {  // a ~ b ~ c
  explicit ConcatExpr(SourcePos pos) : Expr(ExprKind::Concat, pos) {}
  std::vector<ExprPtr> parts;
};

struct ConditionalExpr : Expr {  // then_value if condition else else_value (else optional)
  explicit ConditionalExpr(SourcePos pos) : Expr(ExprKind::Conditional, pos) {}
  ExprPtr condition, then_value, else_value;
};

// Where an assignment or loop stores: a name, a namespace attribute (name.attribute), or a tuple
// of targets to unpack into.
struct Target {
  SourcePos pos;
  std::string name, attribute;
  std::vector<Target> elements;
  bool is_tuple = false;
};

enum class StmtKind { Text, Output, If, For, Set, SetBlock, Macro, CallBlock, FilterBlock, Scope, Break, Continue };

struct Stmt {
  Stmt(StmtKind kind, SourcePos pos) : kind(kind), pos(pos) {}
  virtual ~Stmt() = default;
  StmtKind kind;
  SourcePos pos;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct TextStmt : Stmt {
  TextStmt(SourcePos pos, std::string text) : Stmt(StmtKind::Text, pos), text(std::move(text)) {}
  std::string text;
};

struct OutputStmt : Stmt {
  OutputStmt(SourcePos pos, ExprPtr value) : Stmt(StmtKind::Output, pos), value(std::move(value)) {}
  ExprPtr value;
};

struct IfStmt : Stmt {
  explicit IfStmt(SourcePos pos) : Stmt(StmtKind::If, pos) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, then each elif
  Body else_body;
};

struct ForStmt : Stmt {
  explicit ForStmt(SourcePos pos) : Stmt(StmtKind::For, pos) {}
  Target target;
  ExprPtr iterable, filter;
  Body body, else_body;
};

struct SetStmt : Stmt {
  explicit SetStmt(SourcePos pos) : Stmt(StmtKind::Set, pos) {}
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {
  explicit SetBlockStmt(SourcePos pos) : Stmt(StmtKind::SetBlock, pos) {}
  Target target;
  ExprPtr filter;  // optional FilterExpr chain applied to the body's text
  Body body;
};

struct MacroDefinition {
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> parameters;  // default expressions may be null
  Body body;
  bool uses_varargs = false, uses_kwargs = false;  // the body names them: extra arguments allowed
};

struct MacroStmt : Stmt {
  explicit MacroStmt(SourcePos pos) : Stmt(StmtKind::Macro, pos) {}
  std::shared_ptr<const MacroDefinition> macro;
};

struct CallBlockStmt : Stmt {  // {% call(parameters) callee(arguments) %}body{% endcall %}
  explicit CallBlockStmt(SourcePos pos) : Stmt(StmtKind::CallBlock, pos) {}
  std::shared_ptr<const MacroDefinition> caller;
  ExprPtr call;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(SourcePos pos) : Stmt(StmtKind::FilterBlock, pos) {}
  ExprPtr filter;
  Body body;
};

// A body run in a scope of its own after optional assignments: {% with %} and Hugging Face's
// {% generation %}.
struct ScopeStmt : Stmt {
  explicit ScopeStmt(SourcePos pos) : Stmt(StmtKind::Scope, pos) {}
  std::vector<std::pair<Target, ExprPtr>> assignments;
  Body body;
};

struct Program {
  Body body;
};

// Parses a whole template; throws TemplateError with the position of the first problem.
std::unique_ptr<Program> parse(std::string_view source, const Limits& limits, const Syntax& syntax);

}  // namespace fi::jinja
