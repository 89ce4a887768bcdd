#include "host/text/jinja_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "host/text/jinja_text.h"

namespace fi::jinja {

namespace {

// Nested evaluations at run time (expressions, statements, macro bodies), whatever their source:
// bounds the evaluator's stack use.
constexpr int kMaxRecursionDepth = 1000;

std::string at(SourcePos pos) {
  return "chat template error at line " + std::to_string(pos.line) + ", column " + std::to_string(pos.column) + ": ";
}

class MacroFunction : public Function {
 public:
  MacroFunction(std::shared_ptr<const MacroDefinition> macro, ScopePtr closure)
      : macro_(std::move(macro)), closure_(std::move(closure)) {}
  Value call(Interpreter& interpreter, CallArgs& args) const override {
    return interpreter.call_macro(*macro_, closure_, args, nullptr);
  }
  std::string repr() const override { return "<Macro '" + macro_->name + "'>"; }
  const MacroDefinition& macro() const { return *macro_; }
  const ScopePtr& closure() const { return closure_; }

 private:
  std::shared_ptr<const MacroDefinition> macro_;
  ScopePtr closure_;
};

class BoundMethod : public Function {
 public:
  BoundMethod(Value object, std::string name) : object_(std::move(object)), name_(std::move(name)) {}
  Value call(Interpreter& interpreter, CallArgs& args) const override { return call_method(interpreter, object_, name_, args); }
  std::string repr() const override { return "<built-in method " + name_ + " of " + type_name(object_) + " object>"; }

 private:
  Value object_;
  std::string name_;
};

// Positions of the `loop` object's attributes, updated in place as the loop advances.
enum LoopAttribute : size_t { kIndex, kIndex0, kRevindex, kRevindex0, kFirst, kLast, kLength, kDepth, kDepth0, kPrevitem, kNextitem, kCycle };

class LoopCycle : public Function {
 public:
  explicit LoopCycle(std::weak_ptr<NamespaceData> loop) : loop_(std::move(loop)) {}
  Value call(Interpreter&, CallArgs& args) const override {
    const std::shared_ptr<NamespaceData> loop = loop_.lock();
    if (!loop) fault("loop.cycle() called after its loop ended");
    if (args.positional.empty()) fault("no items for cycling given");
    return args.positional[static_cast<size_t>(loop->attributes[kIndex0].second.as_int()) % args.positional.size()];
  }
  std::string repr() const override { return "<bound method LoopContext.cycle>"; }

 private:
  std::weak_ptr<NamespaceData> loop_;
};

// Adds the line and column of the node being evaluated to faults raised below it.
class RecursionGuard {
 public:
  RecursionGuard(int& depth, SourcePos pos) : depth_(depth) {
    if (++depth_ > kMaxRecursionDepth)
      throw TemplateError(at(pos) + "evaluation nested more than " + std::to_string(kMaxRecursionDepth) + " levels deep");
  }
  ~RecursionGuard() { --depth_; }
  RecursionGuard(const RecursionGuard&) = delete;
  RecursionGuard& operator=(const RecursionGuard&) = delete;

 private:
  int& depth_;
};

// Clears a scope on leaving it, by an exception too: a macro defined in a scope holds that scope,
// and clearing breaks the cycle so both are freed.
class ClearOnExit {
 public:
  explicit ClearOnExit(const ScopePtr& scope) : scope_(scope) {}
  ~ClearOnExit() { scope_->clear(); }
  ClearOnExit(const ClearOnExit&) = delete;
  ClearOnExit& operator=(const ClearOnExit&) = delete;

 private:
  const ScopePtr& scope_;
};

bool checked_add(int64_t a, int64_t b, int64_t& out) { return !__builtin_add_overflow(a, b, &out); }
bool checked_sub(int64_t a, int64_t b, int64_t& out) { return !__builtin_sub_overflow(a, b, &out); }
bool checked_mul(int64_t a, int64_t b, int64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

[[noreturn]] void integer_overflow() { fault("integer result out of the supported range (64-bit)"); }

[[noreturn]] void unsupported_operands(const char* op, const Value& a, const Value& b) {
  if (a.is_undefined()) fault(a.undefined_hint());
  if (b.is_undefined()) fault(b.undefined_hint());
  fault(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

}  // namespace

ArgReader::ArgReader(std::string_view function_name, const CallArgs& args, std::initializer_list<const char*> parameters)
    : function_name_(function_name), bound_(parameters.size(), nullptr) {
  if (args.positional.size() > parameters.size())
    fault(function_name_ + "() takes at most " + std::to_string(parameters.size()) + " argument(s) (" +
          std::to_string(args.positional.size()) + " given)");
  for (size_t i = 0; i < args.positional.size(); ++i) bound_[i] = &args.positional[i];
  for (const auto& keyword : args.keyword) {
    const std::string& name = keyword.first;
    const auto found = std::find_if(parameters.begin(), parameters.end(), [&](const char* p) { return name == p; });
    if (found == parameters.end()) fault(function_name_ + "() got an unexpected keyword argument '" + name + "'");
    const size_t index = static_cast<size_t>(found - parameters.begin());
    if (bound_[index]) fault(function_name_ + "() got multiple values for argument '" + name + "'");
    bound_[index] = &keyword.second;
  }
}

int64_t ArgReader::get_int(size_t index, int64_t fallback) const {
  const Value* value = bound_[index];
  if (!value || value->is_none()) return fallback;
  if (value->kind() == Kind::Float) return static_cast<int64_t>(value->as_double());
  if (value->kind() != Kind::Int && value->kind() != Kind::Bool)
    fault(function_name_ + "(): expected an integer, got '" + type_name(*value) + "'");
  return value->as_int();
}

std::optional<std::string> ArgReader::get_string(size_t index) const {
  const Value* value = bound_[index];
  if (!value || value->is_none()) return std::nullopt;
  if (!value->is_string()) fault(function_name_ + "(): expected a string, got '" + type_name(*value) + "'");
  return value->str();
}

const Value* Scope::find(const std::string& name) const {
  for (const Scope* scope = this; scope; scope = scope->parent_.get()) {
    const auto found = scope->variables_.find(name);
    if (found != scope->variables_.end()) return &found->second;
  }
  return nullptr;
}

void Interpreter::charge_steps(uint64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_steps)
    fault("the template needs more than " + std::to_string(limits_.max_steps) + " evaluation steps (limit)");
}

void Interpreter::charge_bytes(uint64_t bytes) {
  allocated_bytes_ += bytes;
  if (allocated_bytes_ > limits_.max_allocated_bytes)
    fault("the template makes more than " + std::to_string(limits_.max_allocated_bytes) + " bytes of values (limit)");
}

Value Interpreter::make_string(std::string text) {
  if (text.size() > limits_.max_output_bytes) fault_too_long(limits_.max_output_bytes);
  charge_bytes(text.size());
  return Value::string(std::move(text));
}

Value Interpreter::make_list(std::vector<Value> items, bool tuple) {
  charge_bytes(items.size() * sizeof(Value));
  return Value::list(std::move(items), tuple);
}

Value Interpreter::make_iterator(std::vector<Value> items) {
  charge_bytes(items.size() * sizeof(Value));
  return Value::iterator(std::move(items));
}

std::vector<Value> Interpreter::iterate(const Value& value) {
  std::vector<Value> items;
  switch (value.kind()) {
    case Kind::Undefined: return items;
    case Kind::List: items = value.items(); break;
    case Kind::Dict:
      items.reserve(value.dict().entries.size());
      for (const auto& entry : value.dict().entries) items.push_back(entry.first);
      break;
    case Kind::String:
      charge_bytes(value.str().size() * sizeof(Value));
      for (uint32_t c : decode_utf8(value.str())) {
        std::string character;
        append_codepoint(character, c);
        items.push_back(Value::string(std::move(character)));
      }
      break;
    default: fault(quote(type_name(value)) + " object is not iterable");
  }
  charge_steps(items.size());
  charge_bytes(items.size() * sizeof(Value));
  return items;
}

Value Interpreter::get_attribute(const Value& object, const std::string& name) {
  if (object.is_undefined()) fault(object.undefined_hint());
  const MethodKind method = method_kind(object, name);
  if (method == MethodKind::Safe) return Value::function(std::make_shared<BoundMethod>(object, name));
  if (method == MethodKind::Unsafe)
    return Value::undefined("access to attribute '" + name + "' of '" + type_name(object) + "' object is unsafe.");
  if (object.is_dict()) {
    if (const Value* found = dict_find(object.dict(), name)) return *found;
  } else if (object.kind() == Kind::Namespace) {
    if (const Value* found = object.ns().find(name)) return *found;
  }
  return Value::undefined(quote(object_type_repr(object)) + " has no attribute '" + name + "'");
}

Value Interpreter::get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) fault(object.undefined_hint());
  if (object.is_dict()) {
    if (const Value* found = dict_find(object.dict(), key)) return *found;
  } else if ((object.is_sequence() || object.is_string()) && (key.kind() == Kind::Int || key.kind() == Kind::Bool)) {
    int64_t index = key.as_int();
    if (object.is_list()) {
      const int64_t size = static_cast<int64_t>(object.items().size());
      if (index < 0) index += size;
      if (index >= 0 && index < size) return object.items()[static_cast<size_t>(index)];
    } else if (is_ascii(object.str())) {
      const int64_t size = static_cast<int64_t>(object.str().size());
      if (index < 0) index += size;
      if (index >= 0 && index < size) return Value::string(std::string(1, object.str()[static_cast<size_t>(index)]));
    } else {
      charge_steps(object.str().size() / 64);
      const std::vector<uint32_t> codepoints = decode_utf8(object.str());
      const int64_t size = static_cast<int64_t>(codepoints.size());
      if (index < 0) index += size;
      if (index >= 0 && index < size) return Value::string(encode_utf8({codepoints[static_cast<size_t>(index)]}));
    }
  }
  if (key.is_string()) return get_attribute(object, key.str());
  return Value::undefined(quote(object_type_repr(object)) + " has no element " + repr(key, max_string()));
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.kind() == Kind::Function) return callee.function().call(*this, args);
  if (callee.is_undefined()) fault(callee.undefined_hint().empty() ? "undefined value called" : callee.undefined_hint());
  std::string message = "'";
  message += type_name(callee);
  fault(message + "' object is not callable");
}

Value Interpreter::call_macro(const MacroDefinition& macro, const ScopePtr& closure, CallArgs& args, const Value* caller) {
  if (call_depth_ >= limits_.max_call_depth)
    fault("macro calls nested more than " + std::to_string(limits_.max_call_depth) + " deep");
  auto scope = std::make_shared<Scope>(closure);
  const ClearOnExit clear_scope(scope);
  const size_t parameter_count = macro.parameters.size();
  if (args.positional.size() > parameter_count && !macro.uses_varargs)
    fault("macro '" + macro.name + "' takes not more than " + std::to_string(parameter_count) + " argument(s)");
  std::vector<const Value*> bound(parameter_count, nullptr);
  for (size_t i = 0; i < std::min(parameter_count, args.positional.size()); ++i) bound[i] = &args.positional[i];
  std::vector<std::pair<Value, Value>> extra_keywords;
  for (const auto& keyword : args.keyword) {
    const std::string& name = keyword.first;
    const Value& value = keyword.second;
    const auto found = std::find_if(macro.parameters.begin(), macro.parameters.end(), [&](const auto& p) { return p.first == name; });
    if (found != macro.parameters.end()) {
      const size_t index = static_cast<size_t>(found - macro.parameters.begin());
      if (bound[index]) fault("macro '" + macro.name + "' got multiple values for argument '" + name + "'");
      bound[index] = &value;
    } else if (name == "caller" && !caller) {
      scope->set("caller", value);
    } else if (macro.uses_kwargs) {
      extra_keywords.emplace_back(Value::string(name), value);
    } else {
      fault("macro '" + macro.name + "' takes no keyword argument '" + name + "'");
    }
  }
  ++call_depth_;
  struct DepthRestore {
    int& depth;
    ~DepthRestore() { --depth; }
  } restore{call_depth_};
  // Defaults are evaluated at call time in the macro's scope, so they may use earlier parameters.
  for (size_t i = 0; i < parameter_count; ++i) {
    const auto& [name, default_value] = macro.parameters[i];
    if (bound[i])
      scope->set(name, *bound[i]);
    else if (default_value)
      scope->set(name, eval(*default_value, scope));
    else
      scope->set(name, Value::undefined("parameter '" + name + "' was not provided"));
  }
  if (macro.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = parameter_count; i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
    scope->set("varargs", make_list(std::move(rest), true));
  }
  if (macro.uses_kwargs) scope->set("kwargs", Value::dict(std::move(extra_keywords)));
  if (caller) scope->set("caller", *caller);
  std::string out;
  exec(macro.body, scope, out);
  return make_string(std::move(out));
}

std::string Interpreter::render(const Program& program, const ScopePtr& globals) {
  auto scope = std::make_shared<Scope>(globals);
  const ClearOnExit clear_globals(globals), clear_scope(scope);
  std::string out;
  exec(program.body, scope, out);
  return out;
}

void Interpreter::write(std::string& out, std::string_view text) {
  if (out.size() + text.size() > limits_.max_output_bytes)
    fault("the rendered text is longer than the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
  charge_bytes(text.size());
  out += text;
}

// ---- statements ----

Interpreter::Flow Interpreter::exec(const Body& body, const ScopePtr& scope, std::string& out) {
  for (const StmtPtr& stmt : body) {
    const Flow flow = exec_statement(*stmt, scope, out);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_statement(const Stmt& stmt, const ScopePtr& scope, std::string& out) {
  RecursionGuard guard(recursion_depth_, stmt.pos);
  try {
    charge_steps(1);
    switch (stmt.kind) {
      case StmtKind::Text: write(out, static_cast<const TextStmt&>(stmt).text); break;
      case StmtKind::Output: {
        const Value value = eval(*static_cast<const OutputStmt&>(stmt).value, scope);
        if (value.is_string()) {
          write(out, value.str());
        } else {
          write(out, to_str(value, limits_.max_output_bytes));
        }
        break;
      }
      case StmtKind::If: {
        const auto& node = static_cast<const IfStmt&>(stmt);
        for (const auto& [condition, body] : node.branches)
          if (truthy(eval(*condition, scope))) return exec(body, scope, out);
        return exec(node.else_body, scope, out);
      }
      case StmtKind::For: return exec_for(static_cast<const ForStmt&>(stmt), scope, out);
      case StmtKind::Set: {
        const auto& node = static_cast<const SetStmt&>(stmt);
        assign(node.target, eval(*node.value, scope), scope);
        break;
      }
      case StmtKind::SetBlock: {
        const auto& node = static_cast<const SetBlockStmt&>(stmt);
        std::string text;
        {
          auto body_scope = std::make_shared<Scope>(scope);
          const ClearOnExit clear_body(body_scope);
          exec(node.body, body_scope, text);
        }
        Value value = make_string(std::move(text));
        if (node.filter) value = eval_filter(static_cast<const FilterExpr&>(*node.filter), scope, &value);
        assign(node.target, std::move(value), scope);
        break;
      }
      case StmtKind::Macro: {
        const auto& node = static_cast<const MacroStmt&>(stmt);
        scope->set(node.macro->name, Value::function(std::make_shared<MacroFunction>(node.macro, scope)));
        break;
      }
      case StmtKind::CallBlock: {
        const auto& node = static_cast<const CallBlockStmt&>(stmt);
        const auto& call_node = static_cast<const CallExpr&>(*node.call);
        const Value callee = eval(*call_node.callee, scope);
        CallArgs args = eval_arguments(call_node.arguments, scope);
        const Value caller = Value::function(std::make_shared<MacroFunction>(node.caller, scope));
        Value result;
        if (callee.kind() == Kind::Function) {
          if (const auto* macro = dynamic_cast<const MacroFunction*>(&callee.function())) {
            result = call_macro(macro->macro(), macro->closure(), args, &caller);
          } else {
            args.keyword.emplace_back("caller", caller);
            result = call(callee, args);
          }
        } else {
          result = call(callee, args);
        }
        write(out, to_str(result, limits_.max_output_bytes));
        break;
      }
      case StmtKind::FilterBlock: {
        const auto& node = static_cast<const FilterBlockStmt&>(stmt);
        std::string text;
        {
          auto body_scope = std::make_shared<Scope>(scope);
          const ClearOnExit clear_body(body_scope);
          exec(node.body, body_scope, text);
        }
        const Value input = make_string(std::move(text));
        write(out, to_str(eval_filter(static_cast<const FilterExpr&>(*node.filter), scope, &input), limits_.max_output_bytes));
        break;
      }
      case StmtKind::Scope: {
        const auto& node = static_cast<const ScopeStmt&>(stmt);
        std::vector<Value> values;
        for (const auto& assignment : node.assignments) values.push_back(eval(*assignment.second, scope));
        auto inner = std::make_shared<Scope>(scope);
        const ClearOnExit clear_inner(inner);
        for (size_t i = 0; i < values.size(); ++i) assign(node.assignments[i].first, std::move(values[i]), inner);
        return exec(node.body, inner, out);
      }
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
    }
  } catch (const Fault& problem) {
    throw TemplateError(at(stmt.pos) + problem.message);
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_for(const ForStmt& stmt, const ScopePtr& scope, std::string& out) {
  std::vector<Value> items = iterate(eval(*stmt.iterable, scope));
  if (stmt.filter) {
    std::vector<Value> kept;
    auto filter_scope = std::make_shared<Scope>(scope);
    const ClearOnExit clear_filter(filter_scope);
    for (Value& item : items) {
      assign(stmt.target, item, filter_scope);
      if (truthy(eval(*stmt.filter, filter_scope))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec_else(stmt, scope, out);
  const int64_t length = static_cast<int64_t>(items.size());
  // One `loop` object and one scope serve every iteration, as Jinja2's LoopContext does.
  Value loop = Value::make_namespace({{"index", Value()}, {"index0", Value()}, {"revindex", Value()}, {"revindex0", Value()},
                                      {"first", Value()}, {"last", Value()}, {"length", Value::integer(length)},
                                      {"depth", Value::integer(1)}, {"depth0", Value::integer(0)}, {"previtem", Value()},
                                      {"nextitem", Value()}, {"cycle", Value()}});
  NamespaceData& state = loop.ns();
  state.is_loop = true;
  state.attributes[kCycle].second = Value::function(std::make_shared<LoopCycle>(loop.ns_handle()));
  auto iteration = std::make_shared<Scope>(scope);
  const ClearOnExit clear_iteration(iteration);
  // Jinja2 runs the else block unless some iteration ran to the end of the body (a loop whose
  // every iteration ends in break or continue runs it too).
  bool completed_an_iteration = false;
  for (int64_t i = 0; i < length; ++i) {
    if (++loop_iterations_ > limits_.max_loop_iterations)
      fault("loops ran more than " + std::to_string(limits_.max_loop_iterations) + " iterations (limit)");
    state.attributes[kIndex].second = Value::integer(i + 1);
    state.attributes[kIndex0].second = Value::integer(i);
    state.attributes[kRevindex].second = Value::integer(length - i);
    state.attributes[kRevindex0].second = Value::integer(length - i - 1);
    state.attributes[kFirst].second = Value::boolean(i == 0);
    state.attributes[kLast].second = Value::boolean(i == length - 1);
    state.attributes[kPrevitem].second = i > 0 ? items[static_cast<size_t>(i - 1)] : Value();
    state.attributes[kNextitem].second = i + 1 < length ? items[static_cast<size_t>(i + 1)] : Value();
    iteration->set("loop", loop);
    assign(stmt.target, items[static_cast<size_t>(i)], iteration);
    const Flow flow = exec(stmt.body, iteration, out);
    iteration->clear();
    completed_an_iteration = completed_an_iteration || flow == Flow::Normal;
    if (flow == Flow::Break) break;
  }
  if (!completed_an_iteration) return exec_else(stmt, scope, out);
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_else(const ForStmt& stmt, const ScopePtr& scope, std::string& out) {
  auto else_scope = std::make_shared<Scope>(scope);
  const ClearOnExit clear_else(else_scope);
  return exec(stmt.else_body, else_scope, out);
}

void Interpreter::assign(const Target& target, Value value, const ScopePtr& scope) {
  if (!target.attribute.empty()) {
    const Value* object = scope->find(target.name);
    if (!object || object->kind() != Kind::Namespace || object->ns().is_loop) fault("cannot assign attribute on non-namespace object");
    if (value.holds_reference()) fault("a namespace attribute cannot hold a namespace, macro or function");
    NamespaceData& ns = object->ns();
    if (Value* existing = ns.find(target.attribute))
      *existing = std::move(value);
    else
      ns.attributes.emplace_back(target.attribute, std::move(value));
    return;
  }
  if (!target.is_tuple) {
    scope->set(target.name, std::move(value));
    return;
  }
  if (value.is_undefined()) fault(value.undefined_hint().empty() ? "cannot unpack an undefined value" : value.undefined_hint());
  const std::vector<Value> items = iterate(value);
  if (items.size() != target.elements.size()) {
    if (items.size() > target.elements.size())
      fault("too many values to unpack (expected " + std::to_string(target.elements.size()) + ")");
    fault("not enough values to unpack (expected " + std::to_string(target.elements.size()) + ", got " +
          std::to_string(items.size()) + ")");
  }
  for (size_t i = 0; i < items.size(); ++i) assign(target.elements[i], items[i], scope);
}

// ---- expressions ----

Value Interpreter::eval(const Expr& expr, const ScopePtr& scope) {
  RecursionGuard guard(recursion_depth_, expr.pos);
  try {
    charge_steps(1);
    return eval_node(expr, scope);
  } catch (const Fault& problem) {
    throw TemplateError(at(expr.pos) + problem.message);
  }
}

CallArgs Interpreter::eval_arguments(const Arguments& arguments, const ScopePtr& scope) {
  CallArgs args;
  for (const ExprPtr& argument : arguments.positional) args.positional.push_back(eval(*argument, scope));
  for (const auto& [name, argument] : arguments.keyword) args.keyword.emplace_back(name, eval(*argument, scope));
  return args;
}

Value Interpreter::eval_filter(const FilterExpr& expr, const ScopePtr& scope, const Value* block_input) {
  Value input;
  if (expr.operand && expr.operand->kind == ExprKind::Filter) {
    // Earlier filters of the chain; the first of a block's chain filters the block's text.
    input = eval_filter(static_cast<const FilterExpr&>(*expr.operand), scope, block_input);
  } else if (expr.operand) {
    input = eval(*expr.operand, scope);
  } else if (block_input) {
    input = *block_input;
  }
  CallArgs args = eval_arguments(expr.arguments, scope);
  try {
    return apply_filter(*this, expr.name, input, args);
  } catch (const Fault& problem) {
    throw TemplateError(at(expr.pos) + problem.message);
  }
}

Value Interpreter::eval_node(const Expr& expr, const ScopePtr& scope) {
  switch (expr.kind) {
    case ExprKind::Literal: return static_cast<const LiteralExpr&>(expr).value;
    case ExprKind::Name: {
      const std::string& name = static_cast<const NameExpr&>(expr).name;
      if (const Value* value = scope->find(name)) return *value;
      return Value::undefined(quote(name) + " is undefined");
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      for (const ExprPtr& item : static_cast<const SequenceExpr&>(expr).items) items.push_back(eval(*item, scope));
      return make_list(std::move(items), expr.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      std::vector<std::pair<Value, Value>> entries;
      for (const auto& [key, value] : static_cast<const DictExpr&>(expr).entries) entries.emplace_back(eval(*key, scope), eval(*value, scope));
      charge_bytes(entries.size() * 2 * sizeof(Value));
      return Value::dict(std::move(entries));
    }
    case ExprKind::Attribute: {
      const auto& node = static_cast<const AttributeExpr&>(expr);
      return get_attribute(eval(*node.object, scope), node.name);
    }
    case ExprKind::Item: {
      const auto& node = static_cast<const ItemExpr&>(expr);
      const Value object = eval(*node.object, scope);
      return get_item(object, eval(*node.index, scope));
    }
    case ExprKind::Slice: return eval_slice(static_cast<const SliceExpr&>(expr), scope);
    case ExprKind::Call: return eval_call(static_cast<const CallExpr&>(expr), scope);
    case ExprKind::Filter: return eval_filter(static_cast<const FilterExpr&>(expr), scope, nullptr);
    case ExprKind::Test: {
      const auto& node = static_cast<const TestExpr&>(expr);
      const Value input = eval(*node.operand, scope);
      CallArgs args = eval_arguments(node.arguments, scope);
      return Value::boolean(apply_test(*this, node.name, input, args) != node.negated);
    }
    case ExprKind::Not: return Value::boolean(!truthy(eval(*static_cast<const UnaryExpr&>(expr).operand, scope)));
    case ExprKind::Negate:
    case ExprKind::Plus: {
      const Value operand = eval(*static_cast<const UnaryExpr&>(expr).operand, scope);
      const char* op = expr.kind == ExprKind::Negate ? "-" : "+";
      if (operand.is_undefined()) fault(operand.undefined_hint());
      if (!operand.is_number()) fault(std::string("bad operand type for unary ") + op + ": '" + type_name(operand) + "'");
      if (expr.kind == ExprKind::Plus) return operand.kind() == Kind::Bool ? Value::integer(operand.as_int()) : operand;
      if (operand.kind() == Kind::Float) return Value::number(-operand.as_double());
      if (operand.as_int() == std::numeric_limits<int64_t>::min()) integer_overflow();
      return Value::integer(-operand.as_int());
    }
    case ExprKind::Binary: return eval_binary(static_cast<const BinaryExpr&>(expr), scope);
    case ExprKind::And:
    case ExprKind::Or: {
      const auto& node = static_cast<const BinaryExpr&>(expr);
      Value left = eval(*node.left, scope);
      if (truthy(left) == (expr.kind == ExprKind::Or)) return left;
      return eval(*node.right, scope);
    }
    case ExprKind::Compare: return Value::boolean(eval_compare(static_cast<const CompareExpr&>(expr), scope));
    case ExprKind::Concat: {
      std::string text;
      for (const ExprPtr& part : static_cast<const ConcatExpr&>(expr).parts) append_str(text, eval(*part, scope), max_string());
      return make_string(std::move(text));
    }
    case ExprKind::Conditional: {
      const auto& node = static_cast<const ConditionalExpr&>(expr);
      if (truthy(eval(*node.condition, scope))) return eval(*node.then_value, scope);
      if (node.else_value) return eval(*node.else_value, scope);
      return Value::undefined("the inline if-expression on line " + std::to_string(expr.pos.line) +
                              " evaluated to false and no else section was defined.");
    }
  }
  fault("unknown expression");
}

Value Interpreter::eval_call(const CallExpr& expr, const ScopePtr& scope) {
  if (expr.callee->kind == ExprKind::Attribute) {
    // object.method(...) calls the method directly rather than through a bound method value.
    const auto& callee = static_cast<const AttributeExpr&>(*expr.callee);
    const Value object = eval(*callee.object, scope);
    if (method_kind(object, callee.name) == MethodKind::Safe) {
      CallArgs args = eval_arguments(expr.arguments, scope);
      return call_method(*this, object, callee.name, args);
    }
    const Value function = get_attribute(object, callee.name);
    CallArgs args = eval_arguments(expr.arguments, scope);
    return call(function, args);
  }
  const Value function = eval(*expr.callee, scope);
  CallArgs args = eval_arguments(expr.arguments, scope);
  return call(function, args);
}

Value Interpreter::eval_slice(const SliceExpr& expr, const ScopePtr& scope) {
  const Value object = eval(*expr.object, scope);
  if (object.is_undefined()) fault(object.undefined_hint());
  const auto bound = [&](const ExprPtr& part, std::optional<int64_t>& out) {
    if (!part) return true;
    const Value value = eval(*part, scope);
    if (value.is_none()) return true;
    if (value.kind() != Kind::Int && value.kind() != Kind::Bool) return false;
    out = value.as_int();
    return true;
  };
  std::optional<int64_t> start, stop, step;
  bool valid = bound(expr.start, start);
  valid = bound(expr.stop, stop) && valid;
  valid = bound(expr.step, step) && valid;
  if (step && *step == 0) fault("slice step cannot be zero");
  if (!valid || !(object.is_sequence() || object.is_string()))
    return Value::undefined(quote(object_type_repr(object)) + " cannot be sliced this way");
  const bool ascii = object.is_string() && is_ascii(object.str());
  std::vector<uint32_t> codepoints;
  if (object.is_string() && !ascii) codepoints = decode_utf8(object.str());
  const int64_t length = object.is_list() ? static_cast<int64_t>(object.items().size())
                         : ascii          ? static_cast<int64_t>(object.str().size())
                                          : static_cast<int64_t>(codepoints.size());
  // Python's slice.indices().
  const int64_t stride = step.value_or(1);
  const auto clamp = [&](std::optional<int64_t> value, int64_t fallback) {
    if (!value) return fallback;
    int64_t index = *value;
    if (index < 0) index = std::max<int64_t>(index + length, stride < 0 ? -1 : 0);
    else index = std::min<int64_t>(index, stride < 0 ? length - 1 : length);
    return index;
  };
  const int64_t first = clamp(start, stride < 0 ? length - 1 : 0);
  const int64_t last = clamp(stop, stride < 0 ? -1 : length);
  std::vector<int64_t> picks;
  for (int64_t i = first; stride > 0 ? i < last : i > last; i += stride) picks.push_back(i);
  charge_steps(picks.size());
  if (object.is_list()) {
    std::vector<Value> items;
    items.reserve(picks.size());
    for (int64_t i : picks) items.push_back(object.items()[static_cast<size_t>(i)]);
    return make_list(std::move(items), object.list().tuple);
  }
  std::string text;
  for (int64_t i : picks) {
    if (ascii)
      text += object.str()[static_cast<size_t>(i)];
    else
      append_codepoint(text, codepoints[static_cast<size_t>(i)]);
  }
  return make_string(std::move(text));
}

bool Interpreter::eval_compare(const CompareExpr& expr, const ScopePtr& scope) {
  Value left = eval(*expr.first, scope);
  for (const auto& [op, operand] : expr.rest) {
    Value right = eval(*operand, scope);
    bool result = false;
    switch (op) {
      case CompareOp::Equal: result = equals(left, right); break;
      case CompareOp::NotEqual: result = !equals(left, right); break;
      case CompareOp::Less: result = compare(left, right) < 0; break;
      case CompareOp::LessEqual: result = compare(left, right) <= 0; break;
      case CompareOp::Greater: result = compare(left, right) > 0; break;
      case CompareOp::GreaterEqual: result = compare(left, right) >= 0; break;
      case CompareOp::In: result = contains(*this, right, left); break;
      case CompareOp::NotIn: result = !contains(*this, right, left); break;
    }
    if (!result) return false;
    left = std::move(right);
  }
  return true;
}

Value Interpreter::eval_binary(const BinaryExpr& expr, const ScopePtr& scope) {
  const Value a = eval(*expr.left, scope);
  const Value b = eval(*expr.right, scope);
  const bool integers = (a.kind() == Kind::Int || a.kind() == Kind::Bool) && (b.kind() == Kind::Int || b.kind() == Kind::Bool);
  const bool numbers = a.is_number() && b.is_number();
  int64_t result = 0;
  switch (expr.op) {
    case BinaryOp::Add:
      if (integers) {
        if (!checked_add(a.as_int(), b.as_int(), result)) integer_overflow();
        return Value::integer(result);
      }
      if (numbers) return Value::number(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        if (a.str().size() + b.str().size() > max_string()) fault_too_long(max_string());
        return make_string(a.str() + b.str());
      }
      if (a.is_sequence() && b.is_sequence() && a.list().tuple == b.list().tuple) {
        // Charged before copying, so repeated doubling stops at the limit rather than past it.
        const size_t total = a.items().size() + b.items().size();
        charge_steps(total);
        charge_bytes(total * sizeof(Value));
        std::vector<Value> items;
        items.reserve(total);
        items.insert(items.end(), a.items().begin(), a.items().end());
        items.insert(items.end(), b.items().begin(), b.items().end());
        return Value::list(std::move(items), a.list().tuple);
      }
      if (a.is_string() && !b.is_undefined()) fault("can only concatenate str (not \"" + type_name(b) + "\") to str");
      unsupported_operands("+", a, b);
    case BinaryOp::Subtract:
      if (integers) {
        if (!checked_sub(a.as_int(), b.as_int(), result)) integer_overflow();
        return Value::integer(result);
      }
      if (numbers) return Value::number(a.as_double() - b.as_double());
      unsupported_operands("-", a, b);
    case BinaryOp::Multiply: {
      if (integers) {
        if (!checked_mul(a.as_int(), b.as_int(), result)) integer_overflow();
        return Value::integer(result);
      }
      if (numbers) return Value::number(a.as_double() * b.as_double());
      const bool a_count = a.kind() == Kind::Int || a.kind() == Kind::Bool;
      const bool b_count = b.kind() == Kind::Int || b.kind() == Kind::Bool;
      const Value* sequence = a_count && (b.is_string() || b.is_sequence()) ? &b : b_count && (a.is_string() || a.is_sequence()) ? &a : nullptr;
      if (!sequence) unsupported_operands("*", a, b);
      const int64_t times = std::max<int64_t>(0, (sequence == &a ? b : a).as_int());
      if (sequence->is_string()) {
        const uint64_t size = sequence->str().size();
        if (size && static_cast<uint64_t>(times) > max_string() / size) fault_too_long(max_string());
        std::string text;
        text.reserve(size * static_cast<uint64_t>(times));
        for (int64_t i = 0; i < times; ++i) text += sequence->str();
        return make_string(std::move(text));
      }
      const uint64_t size = sequence->items().size();
      if (size && static_cast<uint64_t>(times) > limits_.max_allocated_bytes / sizeof(Value) / size)
        fault("list repetition larger than the limit");
      charge_bytes(size * static_cast<uint64_t>(times) * sizeof(Value));
      charge_steps(size * static_cast<uint64_t>(times));
      std::vector<Value> items;
      for (int64_t i = 0; i < times; ++i) items.insert(items.end(), sequence->items().begin(), sequence->items().end());
      return Value::list(std::move(items), sequence->list().tuple);
    }
    case BinaryOp::Divide:
      if (!numbers) unsupported_operands("/", a, b);
      if (b.as_double() == 0.0) fault("division by zero");
      return Value::number(a.as_double() / b.as_double());
    case BinaryOp::FloorDivide:
      if (!numbers) unsupported_operands("//", a, b);
      if (integers) {
        if (b.as_int() == 0) fault("integer division or modulo by zero");
        if (a.as_int() == std::numeric_limits<int64_t>::min() && b.as_int() == -1) integer_overflow();
        int64_t quotient = a.as_int() / b.as_int();
        if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --quotient;
        return Value::integer(quotient);
      }
      if (b.as_double() == 0.0) fault("float floor division by zero");
      return Value::number(std::floor(a.as_double() / b.as_double()));
    case BinaryOp::Modulo:
      if (a.is_string()) fault("printf-style string formatting with % is not supported; use ~ or the format method");
      if (!numbers) unsupported_operands("%", a, b);
      if (integers) {
        if (b.as_int() == 0) fault("integer division or modulo by zero");
        if (b.as_int() == -1) return Value::integer(0);
        int64_t remainder = a.as_int() % b.as_int();
        if (remainder != 0 && ((remainder < 0) != (b.as_int() < 0))) remainder += b.as_int();
        return Value::integer(remainder);
      }
      if (b.as_double() == 0.0) fault("float modulo");
      {
        double remainder = std::fmod(a.as_double(), b.as_double());
        if (remainder != 0.0 && ((remainder < 0) != (b.as_double() < 0))) remainder += b.as_double();
        return Value::number(remainder);
      }
    case BinaryOp::Power:
      if (!numbers) unsupported_operands("**", a, b);
      if (integers && b.as_int() >= 0) {
        int64_t base = a.as_int(), exponent = b.as_int(), value = 1;
        while (exponent > 0) {
          if (exponent & 1)
            if (!checked_mul(value, base, value)) integer_overflow();
          exponent >>= 1;
          if (exponent > 0 && !checked_mul(base, base, base)) integer_overflow();
        }
        return Value::integer(value);
      }
      if (a.as_double() == 0.0 && b.as_double() < 0) fault("0.0 cannot be raised to a negative power");
      return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  fault("unknown operator");
}

}  // namespace fi::jinja
