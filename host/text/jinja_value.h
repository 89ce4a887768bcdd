#pragma once
// Values of the template language with Python's semantics for printing, truthiness, equality and
// ordering, since chat templates are written against Jinja2 running on Python. Strings, lists and
// dicts are immutable and shared; a namespace is the one mutable object (`set ns.x = ...`).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace fi::jinja {

// A failure inside an operation, without a source position: the evaluator adds the line and
// column of the expression it was evaluating.
struct Fault {
  std::string message;
};
[[noreturn]] void fault(std::string message);
// 'text', for messages (built by appending: GCC 12 misreports "'" + std::string as overlapping).
std::string quote(std::string_view text);

// Containers nested deeper than this are refused, so printing, comparing and freeing values
// never recurse without bound.
constexpr int kMaxValueDepth = 128;

class Value;
class Interpreter;
struct CallArgs;

struct ListData {
  std::vector<Value> items;
  bool tuple = false;
  // What Jinja2's select, map, items, unique, reverse, batch... return: a Python generator, which
  // is true even when empty, has no length or index, and prints as a generator object.
  bool iterator = false;
  int depth = 1;
  bool holds_reference = false;  // contains a namespace or a function
};

struct DictData {
  std::vector<std::pair<Value, Value>> entries;     // insertion order, as Python keeps it
  std::unordered_map<std::string, size_t> index;  // hash_key(key) -> position in entries
  int depth = 1;
  bool holds_reference = false;
};

// namespace() objects, and the `loop` object of a for loop (read-only to templates).
struct NamespaceData {
  std::vector<std::pair<std::string, Value>> attributes;
  bool is_loop = false;
  Value* find(std::string_view name);
};

class Function {
 public:
  virtual ~Function() = default;
  virtual Value call(Interpreter& interpreter, CallArgs& args) const = 0;
  virtual std::string repr() const = 0;
};

struct UndefinedData {
  std::string hint;  // what was undefined; the message when the value is used
};

enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Function };

class Value {
 public:
  Value() = default;  // undefined
  static Value undefined(std::string hint);
  static Value none();
  static Value boolean(bool value);
  static Value integer(int64_t value);
  static Value number(double value);
  static Value string(std::string value);
  static Value list(std::vector<Value> items, bool tuple = false);
  static Value iterator(std::vector<Value> items);
  // Later duplicates of a key replace the earlier value in its first position, as in Python.
  static Value dict(std::vector<std::pair<Value, Value>> entries);
  static Value make_namespace(std::vector<std::pair<std::string, Value>> attributes);
  static Value function(std::shared_ptr<const Function> function);

  Kind kind() const { return static_cast<Kind>(storage_.index()); }
  bool is_undefined() const { return kind() == Kind::Undefined; }
  bool is_none() const { return kind() == Kind::None; }
  bool is_string() const { return kind() == Kind::String; }
  bool is_list() const { return kind() == Kind::List; }  // lists, tuples and iterators
  bool is_iterator() const { return is_list() && list().iterator; }
  bool is_sequence() const { return is_list() && !list().iterator; }  // a list or tuple
  bool is_dict() const { return kind() == Kind::Dict; }
  bool is_number() const { return kind() == Kind::Bool || kind() == Kind::Int || kind() == Kind::Float; }

  bool as_bool() const { return std::get<bool>(storage_); }
  int64_t as_int() const;  // Bool or Int
  double as_double() const;  // Bool, Int or Float
  const std::string& str() const { return *std::get<std::shared_ptr<const std::string>>(storage_); }
  const ListData& list() const { return *std::get<std::shared_ptr<const ListData>>(storage_); }
  const std::vector<Value>& items() const { return list().items; }
  const DictData& dict() const { return *std::get<std::shared_ptr<const DictData>>(storage_); }
  NamespaceData& ns() const { return *std::get<std::shared_ptr<NamespaceData>>(storage_); }
  std::weak_ptr<NamespaceData> ns_handle() const { return std::get<std::shared_ptr<NamespaceData>>(storage_); }
  const Function& function() const { return *std::get<std::shared_ptr<const Function>>(storage_); }
  const std::string& undefined_hint() const;
  int depth() const;
  bool holds_reference() const;
  // Identity of a shared object (for `is sameas` and equality of namespaces and functions).
  const void* identity() const;

 private:
  using Storage = std::variant<std::shared_ptr<const UndefinedData>, std::monostate, bool, int64_t, double,
                               std::shared_ptr<const std::string>, std::shared_ptr<const ListData>,
                               std::shared_ptr<const DictData>, std::shared_ptr<NamespaceData>,
                               std::shared_ptr<const Function>>;
  Storage storage_;
};

// Python semantics.
bool truthy(const Value& value);
// Text longer than `limit` bytes faults, so that printing a large shared structure stays bounded.
[[noreturn]] void fault_too_long(size_t limit);
std::string to_str(const Value& value, size_t limit);  // str(value); undefined prints as ""
void append_str(std::string& out, const Value& value, size_t limit);
std::string repr(const Value& value, size_t limit);
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);          // <0, 0, >0; faults when not orderable
std::string type_name(const Value& value);            // "str", "int", "NoneType", ...
std::string object_type_repr(const Value& value);     // Jinja2's wording: "dict object", "None"
// A string that is equal for equal hashable values (1, 1.0 and True alike); none when unhashable.
std::optional<std::string> hash_key(const Value& value);
const Value* dict_find(const DictData& dict, const Value& key);
const Value* dict_find(const DictData& dict, std::string_view key);

struct JsonFormat {
  std::optional<std::string> indent;  // none: one line
  std::string item_separator, key_separator;
  bool sort_keys = false;
  bool ensure_ascii = false;
  size_t max_bytes = 0;  // longer output faults
};
// json.dumps(value, ensure_ascii=False, ...): faults on values JSON cannot hold.
std::string to_json(const Value& value, const JsonFormat& format);
Value from_json(const nlohmann::ordered_json& json);

}  // namespace fi::jinja
