#include "host/text/jinja_value.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "host/text/jinja_text.h"

namespace fi::jinja {

void fault(std::string message) { throw Fault{std::move(message)}; }

std::string quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '\'';
  out += text;
  out += '\'';
  return out;
}

Value* NamespaceData::find(std::string_view name) {
  for (auto& [key, value] : attributes)
    if (key == name) return &value;
  return nullptr;
}

Value Value::undefined(std::string hint) {
  Value value;
  value.storage_ = std::make_shared<const UndefinedData>(UndefinedData{std::move(hint)});
  return value;
}

Value Value::none() {
  Value value;
  value.storage_ = std::monostate{};
  return value;
}

Value Value::boolean(bool b) {
  Value value;
  value.storage_ = b;
  return value;
}

Value Value::integer(int64_t i) {
  Value value;
  value.storage_ = i;
  return value;
}

Value Value::number(double d) {
  Value value;
  value.storage_ = d;
  return value;
}

Value Value::string(std::string s) {
  Value value;
  value.storage_ = std::make_shared<const std::string>(std::move(s));
  return value;
}

static void check_depth(int depth) {
  if (depth > kMaxValueDepth) fault("values nested deeper than " + std::to_string(kMaxValueDepth) + " levels are not supported");
}

Value Value::list(std::vector<Value> items, bool tuple) {
  auto data = std::make_shared<ListData>();
  for (const Value& item : items) {
    data->depth = std::max(data->depth, item.depth() + 1);
    data->holds_reference = data->holds_reference || item.holds_reference();
  }
  check_depth(data->depth);
  data->items = std::move(items);
  data->tuple = tuple;
  Value value;
  value.storage_ = std::shared_ptr<const ListData>(std::move(data));
  return value;
}

Value Value::iterator(std::vector<Value> items) {
  Value value = list(std::move(items));
  std::const_pointer_cast<ListData>(std::get<std::shared_ptr<const ListData>>(value.storage_))->iterator = true;
  return value;
}

Value Value::dict(std::vector<std::pair<Value, Value>> entries) {
  auto data = std::make_shared<DictData>();
  data->entries.reserve(entries.size());
  for (auto& [key, item] : entries) {
    const std::optional<std::string> hashed = hash_key(key);
    if (!hashed) fault("unhashable type: '" + type_name(key) + "'");
    data->depth = std::max({data->depth, key.depth() + 1, item.depth() + 1});
    data->holds_reference = data->holds_reference || key.holds_reference() || item.holds_reference();
    const auto [position, inserted] = data->index.emplace(*hashed, data->entries.size());
    if (inserted)
      data->entries.emplace_back(std::move(key), std::move(item));
    else
      data->entries[position->second].second = std::move(item);
  }
  check_depth(data->depth);
  Value value;
  value.storage_ = std::shared_ptr<const DictData>(std::move(data));
  return value;
}

Value Value::make_namespace(std::vector<std::pair<std::string, Value>> attributes) {
  auto data = std::make_shared<NamespaceData>();
  for (auto& [name, item] : attributes) {
    if (Value* existing = data->find(name))
      *existing = std::move(item);
    else
      data->attributes.emplace_back(std::move(name), std::move(item));
  }
  Value value;
  value.storage_ = std::move(data);
  return value;
}

Value Value::function(std::shared_ptr<const Function> function) {
  Value value;
  value.storage_ = std::move(function);
  return value;
}

int64_t Value::as_int() const {
  return kind() == Kind::Bool ? static_cast<int64_t>(as_bool()) : std::get<int64_t>(storage_);
}

double Value::as_double() const {
  return kind() == Kind::Float ? std::get<double>(storage_) : static_cast<double>(as_int());
}

const std::string& Value::undefined_hint() const {
  static const std::string no_hint;
  const auto& data = std::get<std::shared_ptr<const UndefinedData>>(storage_);
  return data ? data->hint : no_hint;
}

int Value::depth() const {
  if (kind() == Kind::List) return list().depth;
  if (kind() == Kind::Dict) return dict().depth;
  // A namespace holds no namespaces or functions (the evaluator refuses them), so it adds at most
  // one level to the values inside it.
  if (kind() == Kind::Namespace) return kMaxValueDepth / 2;
  return 0;
}

bool Value::holds_reference() const {
  if (kind() == Kind::List) return list().holds_reference;
  if (kind() == Kind::Dict) return dict().holds_reference;
  return kind() == Kind::Namespace || kind() == Kind::Function;
}

const void* Value::identity() const {
  switch (kind()) {
    case Kind::String: return std::get<std::shared_ptr<const std::string>>(storage_).get();
    case Kind::List: return &list();
    case Kind::Dict: return &dict();
    case Kind::Namespace: return &ns();
    case Kind::Function: return &function();
    default: return nullptr;
  }
}

bool truthy(const Value& value) {
  switch (value.kind()) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return value.as_bool();
    case Kind::Int: return value.as_int() != 0;
    case Kind::Float: return value.as_double() != 0.0;
    case Kind::String: return !value.str().empty();
    case Kind::List: return value.list().iterator || !value.items().empty();
    case Kind::Dict: return !value.dict().entries.empty();
    case Kind::Namespace:
    case Kind::Function: return true;
  }
  return false;
}

void fault_too_long(size_t limit) { fault("text longer than the limit of " + std::to_string(limit) + " bytes"); }

static void append_checked(std::string& out, std::string_view text, size_t limit) {
  if (out.size() + text.size() > limit) fault_too_long(limit);
  out += text;
}

static void append_repr(std::string& out, const Value& value, size_t limit);

void append_str(std::string& out, const Value& value, size_t limit) {
  switch (value.kind()) {
    case Kind::Undefined: return;
    case Kind::String: append_checked(out, value.str(), limit); return;
    case Kind::None: out += "None"; return;
    case Kind::Bool: out += value.as_bool() ? "True" : "False"; return;
    case Kind::Int: out += std::to_string(value.as_int()); return;
    case Kind::Float: out += float_repr(value.as_double()); return;
    default: append_repr(out, value, limit);
  }
  if (out.size() > limit) fault_too_long(limit);
}

std::string to_str(const Value& value, size_t limit) {
  std::string out;
  append_str(out, value, limit);
  return out;
}

static void append_repr(std::string& out, const Value& value, size_t limit) {
  if (out.size() > limit) fault_too_long(limit);
  switch (value.kind()) {
    case Kind::Undefined: out += "Undefined"; return;
    case Kind::String: append_checked(out, string_repr(value.str()), limit); return;
    case Kind::List: {
      const ListData& list = value.list();
      if (list.iterator) {
        out += "<generator object>";
        return;
      }
      out += list.tuple ? '(' : '[';
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i) out += ", ";
        append_repr(out, list.items[i], limit);
      }
      if (list.tuple && list.items.size() == 1) out += ',';
      out += list.tuple ? ')' : ']';
      return;
    }
    case Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.dict().entries) {
        if (!first) out += ", ";
        first = false;
        append_repr(out, key, limit);
        out += ": ";
        append_repr(out, item, limit);
      }
      out += '}';
      return;
    }
    case Kind::Namespace: {
      out += value.ns().is_loop ? "<LoopContext {" : "<Namespace {";
      bool first = true;
      for (const auto& [name, item] : value.ns().attributes) {
        if (!first) out += ", ";
        first = false;
        append_checked(out, string_repr(name) + ": ", limit);
        append_repr(out, item, limit);
      }
      out += "}>";
      return;
    }
    case Kind::Function: out += value.function().repr(); return;
    default: append_str(out, value, limit);
  }
}

std::string repr(const Value& value, size_t limit) {
  std::string out;
  append_repr(out, value, limit);
  if (out.size() > limit) fault_too_long(limit);
  return out;
}

static bool both_integral(const Value& a, const Value& b) {
  return a.kind() != Kind::Float && b.kind() != Kind::Float;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number())
    return both_integral(a, b) ? a.as_int() == b.as_int() : a.as_double() == b.as_double();
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.str() == b.str();
    case Kind::List: {
      const ListData &x = a.list(), &y = b.list();
      if (x.iterator || y.iterator) return &x == &y;
      if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals(x.items[i], y.items[i])) return false;
      return true;
    }
    case Kind::Dict: {
      const DictData &x = a.dict(), &y = b.dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [key, item] : x.entries) {
        const Value* other = dict_find(y, key);
        if (!other || !equals(item, *other)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (both_integral(a, b)) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    const double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int order = a.str().compare(b.str());
    return order < 0 ? -1 : order > 0 ? 1 : 0;
  }
  if (a.is_sequence() && b.is_sequence() && a.list().tuple == b.list().tuple) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equals(x[i], y[i])) return compare(x[i], y[i]);
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined()) fault(a.undefined_hint());
  if (b.is_undefined()) fault(b.undefined_hint());
  fault("'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

std::string type_name(const Value& value) {
  switch (value.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return value.list().iterator ? "generator" : value.list().tuple ? "tuple" : "list";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return value.ns().is_loop ? "LoopContext" : "Namespace";
    case Kind::Function: return "function";
  }
  return "object";
}

std::string object_type_repr(const Value& value) {
  if (value.is_none()) return "None";
  if (value.kind() == Kind::Namespace) return value.ns().is_loop ? "jinja2.runtime.LoopContext object" : "jinja2.utils.Namespace object";
  return type_name(value) + " object";
}

std::optional<std::string> hash_key(const Value& value) {
  switch (value.kind()) {
    case Kind::None: return "n";
    case Kind::Bool:
    case Kind::Int: return "i" + std::to_string(value.as_int());
    case Kind::Float: {
      const double d = value.as_double();
      if (std::trunc(d) == d && std::fabs(d) < 9.2e18) return "i" + std::to_string(static_cast<int64_t>(d));
      return "f" + float_repr(d);
    }
    case Kind::String: return "s" + value.str();
    case Kind::List: {
      if (value.is_iterator()) return "p" + std::to_string(reinterpret_cast<uintptr_t>(value.identity()));
      if (!value.list().tuple) return std::nullopt;
      std::string key = "t" + std::to_string(value.items().size());
      for (const Value& item : value.items()) {
        const std::optional<std::string> part = hash_key(item);
        if (!part) return std::nullopt;
        key += ":" + std::to_string(part->size()) + ":" + *part;
      }
      return key;
    }
    case Kind::Namespace:
    case Kind::Function: return "p" + std::to_string(reinterpret_cast<uintptr_t>(value.identity()));
    default: return std::nullopt;
  }
}

const Value* dict_find(const DictData& dict, const Value& key) {
  const std::optional<std::string> hashed = hash_key(key);
  if (!hashed) return nullptr;
  const auto found = dict.index.find(*hashed);
  return found == dict.index.end() ? nullptr : &dict.entries[found->second].second;
}

const Value* dict_find(const DictData& dict, std::string_view key) {
  std::string hashed = "s";
  hashed += key;
  const auto found = dict.index.find(hashed);
  return found == dict.index.end() ? nullptr : &dict.entries[found->second].second;
}

namespace {

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  return float_repr(d);
}

std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Kind::String: return key.str();
    case Kind::None: return "null";
    case Kind::Bool: return key.as_bool() ? "true" : "false";
    case Kind::Int: return std::to_string(key.as_int());
    case Kind::Float: return json_float(key.as_double());
    default: fault("keys must be str, int, float, bool or None, not " + type_name(key));
  }
}

void newline_and_indent(std::string& out, const JsonFormat& format, int level) {
  out += '\n';
  for (int i = 0; i < level; ++i) append_checked(out, *format.indent, format.max_bytes);
}

void append_json(std::string& out, const Value& value, const JsonFormat& format, int level) {
  if (out.size() > format.max_bytes) fault_too_long(format.max_bytes);
  switch (value.kind()) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += value.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(value.as_int()); return;
    case Kind::Float: out += json_float(value.as_double()); return;
    case Kind::String: append_json_string(out, value.str(), format.ensure_ascii); return;
    case Kind::List: {
      if (value.is_iterator()) fault("Object of type generator is not JSON serializable");
      const auto& items = value.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += format.item_separator;
        if (format.indent) newline_and_indent(out, format, level + 1);
        append_json(out, items[i], format, level + 1);
      }
      if (format.indent) newline_and_indent(out, format, level);
      out += ']';
      return;
    }
    case Kind::Dict: {
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& entry : value.dict().entries) entries.push_back(&entry);
      if (entries.empty()) {
        out += "{}";
        return;
      }
      if (format.sort_keys)
        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return compare(a->first, b->first) < 0; });
      out += '{';
      bool first = true;
      for (const auto* entry : entries) {
        if (!first) out += format.item_separator;
        first = false;
        if (format.indent) newline_and_indent(out, format, level + 1);
        append_json_string(out, json_key(entry->first), format.ensure_ascii);
        out += format.key_separator;
        append_json(out, entry->second, format, level + 1);
      }
      if (format.indent) newline_and_indent(out, format, level);
      out += '}';
      return;
    }
    default: fault("Object of type " + type_name(value) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& value, const JsonFormat& format) {
  std::string out;
  append_json(out, value, format, 0);
  if (out.size() > format.max_bytes) fault_too_long(format.max_bytes);
  return out;
}

static Value from_json_at(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxValueDepth) fault("JSON nested deeper than " + std::to_string(kMaxValueDepth) + " levels is not supported");
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Value::integer(static_cast<int64_t>(u));
      return Value::number(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::number(json.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(from_json_at(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<Value, Value>> entries;
      entries.reserve(json.size());
      for (const auto& [key, item] : json.items()) entries.emplace_back(Value::string(key), from_json_at(item, depth + 1));
      return Value::dict(std::move(entries));
    }
    default: fault("binary JSON values are not supported in templates");
  }
}

Value from_json(const nlohmann::ordered_json& json) { return from_json_at(json, 1); }

}  // namespace fi::jinja
