#pragma once
// The evaluator: runs a parsed template against global variables, within Limits. Filters, tests,
// methods and global functions (jinja_builtins.cpp) reach it through this interface.
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>

#include "host/text/jinja_ast.h"

namespace fi::jinja {

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Binds call arguments to parameter names as Python does, faulting on unknown or extra ones.
class ArgReader {
 public:
  ArgReader(std::string_view function_name, const CallArgs& args, std::initializer_list<const char*> parameters);
  const Value* get(size_t index) const { return bound_[index]; }
  Value get_or(size_t index, Value fallback) const { return bound_[index] ? *bound_[index] : std::move(fallback); }
  bool get_bool(size_t index, bool fallback) const { return bound_[index] ? truthy(*bound_[index]) : fallback; }
  int64_t get_int(size_t index, int64_t fallback) const;
  std::optional<std::string> get_string(size_t index) const;  // none when absent or none

 private:
  std::string function_name_;
  std::vector<const Value*> bound_;
};

class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* find(const std::string& name) const;
  void set(const std::string& name, Value value) { variables_[name] = std::move(value); }
  // Drops the variables, breaking reference cycles through macros defined in this scope.
  void clear() { variables_.clear(); }

 private:
  std::shared_ptr<Scope> parent_;
  std::unordered_map<std::string, Value> variables_;
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  Interpreter(const Limits& limits, const RenderOptions& options) : limits_(limits), options_(options) {}
  std::string render(const Program& program, const ScopePtr& globals);

  const Limits& limits() const { return limits_; }
  const RenderOptions& options() const { return options_; }
  size_t max_string() const { return limits_.max_output_bytes; }

  // Work accounting: every evaluation step, and every byte of strings and containers made.
  void charge_steps(uint64_t steps);
  void charge_bytes(uint64_t bytes);
  Value make_string(std::string text);
  Value make_list(std::vector<Value> items, bool tuple = false);
  Value make_iterator(std::vector<Value> items);

  // The items a for loop would see: list items, dict keys, string characters, nothing for
  // undefined; faults for values that are not iterable.
  std::vector<Value> iterate(const Value& value);
  Value get_attribute(const Value& object, const std::string& name);  // object.name
  Value get_item(const Value& object, const Value& key);               // object[key]
  Value call(const Value& callee, CallArgs& args);
  Value call_macro(const MacroDefinition& macro, const ScopePtr& closure, CallArgs& args, const Value* caller);

 private:
  enum class Flow { Normal, Break, Continue };

  Value eval(const Expr& expr, const ScopePtr& scope);
  Value eval_node(const Expr& expr, const ScopePtr& scope);
  Value eval_filter(const FilterExpr& expr, const ScopePtr& scope, const Value* block_input);
  CallArgs eval_arguments(const Arguments& arguments, const ScopePtr& scope);
  Value eval_binary(const BinaryExpr& expr, const ScopePtr& scope);
  bool eval_compare(const CompareExpr& expr, const ScopePtr& scope);
  Value eval_slice(const SliceExpr& expr, const ScopePtr& scope);
  Value eval_call(const CallExpr& expr, const ScopePtr& scope);

  Flow exec(const Body& body, const ScopePtr& scope, std::string& out);
  Flow exec_statement(const Stmt& stmt, const ScopePtr& scope, std::string& out);
  Flow exec_for(const ForStmt& stmt, const ScopePtr& scope, std::string& out);
  Flow exec_else(const ForStmt& stmt, const ScopePtr& scope, std::string& out);
  void assign(const Target& target, Value value, const ScopePtr& scope);
  void write(std::string& out, std::string_view text);

  const Limits& limits_;
  const RenderOptions& options_;
  uint64_t steps_ = 0, allocated_bytes_ = 0, loop_iterations_ = 0;
  int recursion_depth_ = 0, call_depth_ = 0;
};

// Builtins (jinja_builtins.cpp).
Value apply_filter(Interpreter& interpreter, const std::string& name, const Value& input, CallArgs& args);
bool apply_test(Interpreter& interpreter, const std::string& name, const Value& input, CallArgs& args);
// Whether object.name is a method (safe to call) or a method the sandbox refuses.
enum class MethodKind { None, Safe, Unsafe };
MethodKind method_kind(const Value& object, const std::string& name);
Value call_method(Interpreter& interpreter, const Value& object, const std::string& name, CallArgs& args);
void add_globals(Scope& globals);
bool contains(Interpreter& interpreter, const Value& container, const Value& item);  // `item in container`

}  // namespace fi::jinja
