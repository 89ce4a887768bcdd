// Jinja2's filters and tests, Python's str/dict/list methods, and the global functions chat
// templates call, with Jinja2's (and Python's) behaviour for the values they accept.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <functional>
#include <limits>
#include <unordered_set>

#include "host/text/jinja_eval.h"
#include "host/text/jinja_text.h"

namespace fi::jinja {

namespace {

using FilterFunction = Value (*)(Interpreter&, const Value&, CallArgs&);
using TestFunction = bool (*)(Interpreter&, const Value&, CallArgs&);

std::string text(Interpreter& interpreter, const Value& value) { return to_str(value, interpreter.max_string()); }

// Text processing costs steps in proportion to its size.
void charge_text(Interpreter& interpreter, size_t bytes) { interpreter.charge_steps(1 + bytes / 64); }

int64_t checked_int(const Value& value, const char* what) {
  if (value.kind() != Kind::Int && value.kind() != Kind::Bool) fault(std::string(what) + " must be an integer, not '" + type_name(value) + "'");
  return value.as_int();
}

// Python's int(text, base) for the forms templates meet: optional sign, base prefix, underscores.
std::optional<int64_t> parse_int(std::string_view input, int base) {
  std::string digits = strip(input, std::nullopt, true, true);
  bool negative = false;
  size_t i = 0;
  if (i < digits.size() && (digits[i] == '+' || digits[i] == '-')) negative = digits[i++] == '-';
  if (digits.size() > i + 1 && digits[i] == '0') {
    const char prefix = static_cast<char>(digits[i + 1] | 0x20);
    if ((prefix == 'x' && (base == 16 || base == 0)) || (prefix == 'o' && (base == 8 || base == 0)) ||
        (prefix == 'b' && (base == 2 || base == 0))) {
      base = prefix == 'x' ? 16 : prefix == 'o' ? 8 : 2;
      i += 2;
    }
  }
  if (base == 0) base = 10;
  std::string cleaned;
  for (size_t k = i; k < digits.size(); ++k) {
    if (digits[k] == '_' && k > i && k + 1 < digits.size() && digits[k - 1] != '_') continue;
    cleaned += digits[k];
  }
  if (cleaned.empty()) return std::nullopt;
  uint64_t magnitude = 0;
  const auto result = std::from_chars(cleaned.data(), cleaned.data() + cleaned.size(), magnitude, base);
  if (result.ec != std::errc() || result.ptr != cleaned.data() + cleaned.size()) return std::nullopt;
  if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0)) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

// Python's float(text).
std::optional<double> parse_float(std::string_view input) {
  std::string cleaned = to_lower(strip(input, std::nullopt, true, true));
  cleaned.erase(std::remove(cleaned.begin(), cleaned.end(), '_'), cleaned.end());
  if (cleaned.empty()) return std::nullopt;
  size_t i = 0;
  const bool negative = cleaned[0] == '-';
  if (cleaned[0] == '+' || cleaned[0] == '-') i = 1;
  const std::string_view body = std::string_view(cleaned).substr(i);
  if (body == "inf" || body == "infinity") return negative ? -INFINITY : INFINITY;
  if (body == "nan") return NAN;
  double value = 0.0;
  const auto result = std::from_chars(body.data(), body.data() + body.size(), value);
  if (result.ec != std::errc() || result.ptr != body.data() + body.size()) return std::nullopt;
  return negative ? -value : value;
}

// Jinja2's attribute getter: "a.b.0" looks up a, then b, then index 0.
Value lookup_path(Interpreter& interpreter, const Value& item, const std::string& path) {
  Value value = item;
  for (const std::string& part : split(path, std::string("."), -1)) {
    const std::optional<int64_t> index = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })
                                             ? parse_int(part, 10)
                                             : std::nullopt;
    value = interpreter.get_item(value, index ? Value::integer(*index) : Value::string(part));
  }
  return value;
}

// The key sort, unique, min and max compare by: the attribute if given, lower-cased strings unless
// case_sensitive.
Value sort_key(Interpreter& interpreter, const Value& item, const std::optional<std::string>& attribute, bool case_sensitive) {
  Value key = attribute ? lookup_path(interpreter, item, *attribute) : item;
  if (!case_sensitive && key.is_string()) return Value::string(to_lower(key.str()));
  return key;
}

void sort_values(Interpreter& interpreter, std::vector<Value>& items, const std::function<int(const Value&, const Value&)>& order, bool reverse) {
  const double n = static_cast<double>(items.size());
  interpreter.charge_steps(static_cast<uint64_t>(n * std::log2(n + 2)));
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) { return reverse ? order(b, a) < 0 : order(a, b) < 0; });
}

Value undefined_or_first(std::vector<Value> items, bool last, const char* empty_message) {
  if (items.empty()) return Value::undefined(empty_message);
  return last ? items.back() : items.front();
}

// ---- filters ----

Value filter_abs(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader("abs", args, {});
  if (input.kind() == Kind::Float) return Value::number(std::fabs(input.as_double()));
  if (input.kind() == Kind::Int || input.kind() == Kind::Bool) {
    if (input.as_int() == std::numeric_limits<int64_t>::min()) fault("integer result out of the supported range (64-bit)");
    return Value::integer(std::llabs(input.as_int()));
  }
  if (input.is_undefined()) fault(input.undefined_hint());
  fault("bad operand type for abs(): '" + type_name(input) + "'");
}

Value filter_attr(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("attr", args, {"name"});
  const std::optional<std::string> name = reader.get_string(0);
  if (!name) fault("attr() needs an attribute name");
  // Attributes only, as Python's getattr: a dict's keys are not its attributes.
  if (input.is_dict() && method_kind(input, *name) == MethodKind::None)
    return Value::undefined("'dict object' has no attribute '" + *name + "'");
  return interpreter.get_attribute(input, *name);
}

Value filter_batch(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("batch", args, {"linecount", "fill_with"});
  const int64_t size = reader.get_int(0, 0);
  if (size <= 0) fault("batch() needs a positive line count");
  std::vector<Value> batches, current;
  for (Value& item : interpreter.iterate(input)) {
    current.push_back(std::move(item));
    if (static_cast<int64_t>(current.size()) == size) batches.push_back(interpreter.make_list(std::exchange(current, {})));
  }
  if (!current.empty()) {
    if (const Value* fill = reader.get(1); fill && !fill->is_none())
      while (static_cast<int64_t>(current.size()) < size) current.push_back(*fill);
    batches.push_back(interpreter.make_list(std::move(current)));
  }
  return interpreter.make_iterator(std::move(batches));
}

Value filter_capitalize(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("capitalize", args, {});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  return interpreter.make_string(capitalize(s));
}

Value pad(Interpreter& interpreter, const std::string& s, int64_t width, std::string_view fill, char align) {
  const int64_t length = static_cast<int64_t>(codepoint_count(s));
  if (width <= length) return interpreter.make_string(s);
  if (static_cast<uint64_t>(width) * fill.size() > interpreter.max_string()) fault_too_long(interpreter.max_string());
  const int64_t total = width - length;
  int64_t left = align == '<' ? 0 : align == '>' ? total : total / 2 + (total & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = left + length; i < width; ++i) out += fill;
  return interpreter.make_string(std::move(out));
}

Value filter_center(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("center", args, {"width"});
  return pad(interpreter, text(interpreter, input), reader.get_int(0, 80), " ", '^');
}

Value filter_default(Interpreter&, const Value& input, CallArgs& args) {
  const ArgReader reader("default", args, {"default_value", "boolean"});
  const bool use_default = reader.get_bool(1, false) ? !truthy(input) : input.is_undefined();
  return use_default ? reader.get_or(0, Value::string("")) : input;
}

Value filter_dictsort(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (input.is_undefined()) fault(input.undefined_hint());
  if (!input.is_dict()) fault("You can only sort by either 'key' or 'value'");
  const bool case_sensitive = reader.get_bool(0, false);
  const std::string by = reader.get_string(1).value_or("key");
  if (by != "key" && by != "value") fault("You can only sort by either 'key' or 'value'");
  const size_t position = by == "key" ? 0 : 1;
  std::vector<Value> pairs;
  for (const auto& [key, value] : input.dict().entries) pairs.push_back(interpreter.make_list({key, value}, true));
  sort_values(interpreter, pairs, [&](const Value& a, const Value& b) {
    return compare(sort_key(interpreter, a.items()[position], std::nullopt, case_sensitive),
                   sort_key(interpreter, b.items()[position], std::nullopt, case_sensitive));
  }, reader.get_bool(2, false));
  return interpreter.make_list(std::move(pairs));
}

Value filter_escape(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("escape", args, {});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return interpreter.make_string(std::move(out));
}

Value filter_first(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("first", args, {});
  if (input.is_list()) return input.items().empty() ? Value::undefined("No first item, sequence was empty.") : input.items().front();
  return undefined_or_first(interpreter.iterate(input), false, "No first item, sequence was empty.");
}

Value filter_last(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("last", args, {});
  if (input.is_iterator()) fault("'generator' object is not reversible");
  if (input.is_list()) return input.items().empty() ? Value::undefined("No last item, sequence was empty.") : input.items().back();
  return undefined_or_first(interpreter.iterate(input), true, "No last item, sequence was empty.");
}

Value filter_float(Interpreter&, const Value& input, CallArgs& args) {
  const ArgReader reader("float", args, {"default"});
  if (input.is_number()) return Value::number(input.as_double());
  if (input.is_string())
    if (const std::optional<double> parsed = parse_float(input.str())) return Value::number(*parsed);
  return reader.get_or(0, Value::number(0.0));
}

Value filter_int(Interpreter&, const Value& input, CallArgs& args) {
  const ArgReader reader("int", args, {"default", "base"});
  if (input.kind() == Kind::Int || input.kind() == Kind::Bool) return Value::integer(input.as_int());
  if (input.kind() == Kind::Float) {
    const double d = std::trunc(input.as_double());
    if (std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer(static_cast<int64_t>(d));
  }
  if (input.is_string()) {
    const int64_t base = reader.get_int(1, 10);
    if (base == 0 || (base >= 2 && base <= 36))
      if (const std::optional<int64_t> parsed = parse_int(input.str(), static_cast<int>(base))) return Value::integer(*parsed);
    if (const std::optional<double> parsed = parse_float(input.str()); parsed && std::isfinite(*parsed) && std::fabs(*parsed) < 9.2e18)
      return Value::integer(static_cast<int64_t>(std::trunc(*parsed)));
  }
  return reader.get_or(0, Value::integer(0));
}

Value filter_indent(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("indent", args, {"width", "first", "blank"});
  std::string indentation;
  if (const Value* width = reader.get(0); width && width->is_string()) {
    indentation = width->str();
  } else {
    const int64_t count = reader.get_int(0, 4);
    if (count > static_cast<int64_t>(interpreter.max_string())) fault_too_long(interpreter.max_string());
    indentation.assign(static_cast<size_t>(std::max<int64_t>(0, count)), ' ');
  }
  const bool first = reader.get_bool(1, false), blank = reader.get_bool(2, false);
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  const std::vector<std::string> lines = splitlines(s + "\n", false);
  if (static_cast<uint64_t>(lines.size() + 1) * indentation.size() + s.size() > interpreter.max_string())
    fault_too_long(interpreter.max_string());
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += indentation;
    }
    out += lines[i];
  }
  if (first) out = indentation + out;
  return interpreter.make_string(std::move(out));
}

Value filter_items(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("items", args, {});
  if (input.is_undefined()) return interpreter.make_iterator({});
  if (!input.is_dict()) fault("Can only get item pairs from a mapping.");
  std::vector<Value> pairs;
  for (const auto& [key, value] : input.dict().entries) pairs.push_back(interpreter.make_list({key, value}, true));
  return interpreter.make_iterator(std::move(pairs));
}

Value filter_join(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("join", args, {"d", "attribute"});
  const std::string separator = text(interpreter, reader.get_or(0, Value::string("")));
  const std::optional<std::string> attribute = reader.get_string(1);
  std::string out;
  bool first = true;
  for (const Value& item : interpreter.iterate(input)) {
    if (!first) {
      if (out.size() + separator.size() > interpreter.max_string()) fault_too_long(interpreter.max_string());
      out += separator;
    }
    first = false;
    append_str(out, attribute ? lookup_path(interpreter, item, *attribute) : item, interpreter.max_string());
  }
  return interpreter.make_string(std::move(out));
}

Value filter_length(Interpreter&, const Value& input, CallArgs& args) {
  ArgReader("length", args, {});
  switch (input.kind()) {
    case Kind::Undefined: return Value::integer(0);
    case Kind::String: return Value::integer(static_cast<int64_t>(codepoint_count(input.str())));
    case Kind::List:
      if (input.is_iterator()) fault("object of type 'generator' has no len()");
      return Value::integer(static_cast<int64_t>(input.items().size()));
    case Kind::Dict: return Value::integer(static_cast<int64_t>(input.dict().entries.size()));
    default: fault("object of type '" + type_name(input) + "' has no len()");
  }
}

Value filter_list(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("list", args, {});
  return interpreter.make_list(interpreter.iterate(input));
}

Value filter_lower(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("lower", args, {});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  return interpreter.make_string(to_lower(s));
}

Value filter_upper(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("upper", args, {});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  return interpreter.make_string(to_upper(s));
}

// map(attribute=..., default=...) or map('filter', args...).
Value filter_map(Interpreter& interpreter, const Value& input, CallArgs& args) {
  std::vector<Value> items = interpreter.iterate(input);
  if (args.positional.empty()) {
    const ArgReader reader("map", args, {"attribute", "default"});
    const std::optional<std::string> attribute = reader.get_string(0);
    if (!attribute) fault("map() needs a filter name or attribute=");
    const Value* fallback = reader.get(1);
    for (Value& item : items) {
      item = lookup_path(interpreter, item, *attribute);
      if (fallback && item.is_undefined()) item = *fallback;
    }
    return interpreter.make_iterator(std::move(items));
  }
  if (!args.positional[0].is_string()) fault("map() needs a filter name");
  const std::string name = args.positional[0].str();
  CallArgs filter_args{std::vector<Value>(args.positional.begin() + 1, args.positional.end()), args.keyword};
  for (Value& item : items) {
    CallArgs copy = filter_args;
    item = apply_filter(interpreter, name, item, copy);
  }
  return interpreter.make_iterator(std::move(items));
}

Value filter_min_max(Interpreter& interpreter, const Value& input, CallArgs& args, bool maximum) {
  const ArgReader reader(maximum ? "max" : "min", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = reader.get_bool(0, false);
  const std::optional<std::string> attribute = reader.get_string(1);
  const std::vector<Value> items = interpreter.iterate(input);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  const Value* best = &items[0];
  for (const Value& item : items) {
    const int order = compare(sort_key(interpreter, item, attribute, case_sensitive), sort_key(interpreter, *best, attribute, case_sensitive));
    if (maximum ? order > 0 : order < 0) best = &item;
  }
  return *best;
}

Value filter_max(Interpreter& interpreter, const Value& input, CallArgs& args) { return filter_min_max(interpreter, input, args, true); }
Value filter_min(Interpreter& interpreter, const Value& input, CallArgs& args) { return filter_min_max(interpreter, input, args, false); }

Value filter_pprint(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("pprint", args, {});
  return interpreter.make_string(repr(input, interpreter.max_string()));
}

// select / reject (by a test) and selectattr / rejectattr (by a test on an attribute).
Value select_items(Interpreter& interpreter, const Value& input, CallArgs& args, bool keep_matching, bool by_attribute) {
  std::vector<Value> positional = args.positional;
  std::optional<std::string> attribute;
  if (by_attribute) {
    if (positional.empty() || !positional[0].is_string()) fault("selectattr() and rejectattr() need an attribute name");
    attribute = positional[0].str();
    positional.erase(positional.begin());
  }
  std::optional<std::string> test;
  if (!positional.empty()) {
    if (!positional[0].is_string()) fault("select() needs a test name");
    test = positional[0].str();
    positional.erase(positional.begin());
  }
  std::vector<Value> kept;
  for (Value& item : interpreter.iterate(input)) {
    const Value subject = attribute ? lookup_path(interpreter, item, *attribute) : item;
    bool match;
    if (test) {
      CallArgs test_args{positional, args.keyword};
      match = apply_test(interpreter, *test, subject, test_args);
    } else {
      match = truthy(subject);
    }
    if (match == keep_matching) kept.push_back(std::move(item));
  }
  return interpreter.make_iterator(std::move(kept));
}

Value filter_select(Interpreter& i, const Value& input, CallArgs& args) { return select_items(i, input, args, true, false); }
Value filter_reject(Interpreter& i, const Value& input, CallArgs& args) { return select_items(i, input, args, false, false); }
Value filter_selectattr(Interpreter& i, const Value& input, CallArgs& args) { return select_items(i, input, args, true, true); }
Value filter_rejectattr(Interpreter& i, const Value& input, CallArgs& args) { return select_items(i, input, args, false, true); }

Value replace_text(Interpreter& interpreter, const std::string& s, const std::string& old_text, const std::string& new_text, int64_t count) {
  charge_text(interpreter, s.size());
  int64_t occurrences = static_cast<int64_t>(count_occurrences(s, old_text));
  if (count >= 0) occurrences = std::min(occurrences, count);
  if (new_text.size() > old_text.size() &&
      s.size() + static_cast<uint64_t>(occurrences) * (new_text.size() - old_text.size()) > interpreter.max_string())
    fault_too_long(interpreter.max_string());
  return interpreter.make_string(replace(s, old_text, new_text, count));
}

Value filter_replace(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("replace", args, {"old", "new", "count"});
  if (!reader.get(0) || !reader.get(1)) fault("replace() needs the old and new text");
  return replace_text(interpreter, text(interpreter, input), text(interpreter, *reader.get(0)), text(interpreter, *reader.get(1)),
                      reader.get_int(2, -1));
}

Value filter_reverse(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("reverse", args, {});
  if (input.is_string()) {
    std::vector<uint32_t> codepoints = decode_utf8(input.str());
    std::reverse(codepoints.begin(), codepoints.end());
    return interpreter.make_string(encode_utf8(codepoints));
  }
  std::vector<Value> items = interpreter.iterate(input);
  std::reverse(items.begin(), items.end());
  return interpreter.make_iterator(std::move(items));
}

Value filter_round(Interpreter&, const Value& input, CallArgs& args) {
  const ArgReader reader("round", args, {"precision", "method"});
  const int64_t precision = reader.get_int(0, 0);
  const std::string method = reader.get_string(1).value_or("common");
  if (method != "common" && method != "ceil" && method != "floor") fault("method must be common, ceil or floor");
  if (input.is_undefined()) fault(input.undefined_hint());
  if (!input.is_number()) fault("type " + type_name(input) + " doesn't define __round__ method");
  if (precision < -308 || precision > 308) fault("round() precision out of range");
  if (method == "common" && input.kind() != Kind::Float && precision >= 0) return Value::integer(input.as_int());
  const double value = input.as_double();
  const double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value::number(std::ceil(value * scale) / scale);
  if (method == "floor") return Value::number(std::floor(value * scale) / scale);
  if (!std::isfinite(value)) return Value::number(value);
  if (precision < 0) return Value::number(std::nearbyint(value * scale) / scale);
  // Python rounds the exact binary value half to even; printf does the same, then reading back.
  char buffer[400];
  std::snprintf(buffer, sizeof buffer, "%.*f", static_cast<int>(precision), value);
  double rounded = 0.0;
  std::from_chars(buffer, buffer + std::strlen(buffer), rounded);
  return Value::number(rounded);
}

Value filter_safe(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("safe", args, {});
  return input.is_string() ? input : interpreter.make_string(text(interpreter, input));
}

Value filter_sort(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("sort", args, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = reader.get_bool(0, false), case_sensitive = reader.get_bool(1, false);
  std::vector<std::optional<std::string>> attributes;
  if (const std::optional<std::string> attribute = reader.get_string(2)) {
    for (const std::string& part : split(*attribute, std::string(","), -1)) attributes.emplace_back(strip(part, std::nullopt, true, true));
  } else {
    attributes.emplace_back(std::nullopt);
  }
  std::vector<Value> items = interpreter.iterate(input);
  sort_values(interpreter, items, [&](const Value& a, const Value& b) {
    for (const auto& attribute : attributes) {
      const int order = compare(sort_key(interpreter, a, attribute, case_sensitive), sort_key(interpreter, b, attribute, case_sensitive));
      if (order != 0) return order;
    }
    return 0;
  }, reverse);
  return interpreter.make_list(std::move(items));
}

Value filter_string(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("string", args, {});
  return input.is_string() ? input : interpreter.make_string(text(interpreter, input));
}

Value filter_sum(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("sum", args, {"attribute", "start"});
  const std::optional<std::string> attribute = reader.get_string(0);
  Value total = reader.get_or(1, Value::integer(0));
  for (const Value& item : interpreter.iterate(input)) {
    const Value value = attribute ? lookup_path(interpreter, item, *attribute) : item;
    if (!value.is_number() || !total.is_number()) fault("unsupported operand type(s) for +: '" + type_name(total) + "' and '" + type_name(value) + "'");
    int64_t sum = 0;
    if (total.kind() != Kind::Float && value.kind() != Kind::Float) {
      if (__builtin_add_overflow(total.as_int(), value.as_int(), &sum)) fault("integer result out of the supported range (64-bit)");
      total = Value::integer(sum);
    } else {
      total = Value::number(total.as_double() + value.as_double());
    }
  }
  return total;
}

// Jinja2's title: each run of characters after -, whitespace or an opening bracket is capitalized.
Value filter_title(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("title", args, {});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  const std::vector<uint32_t> codepoints = decode_utf8(s);
  const auto is_separator = [](uint32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c); };
  std::string out;
  bool word_start = true;
  for (uint32_t c : codepoints) {
    if (is_separator(c)) {
      append_codepoint(out, c);
      word_start = true;
    } else {
      append_codepoint(out, word_start ? py_upper(c) : py_lower(c));
      word_start = false;
    }
  }
  return interpreter.make_string(std::move(out));
}

// Hugging Face's tojson: json.dumps(value, ensure_ascii=False, indent, separators, sort_keys).
Value filter_tojson(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonFormat format;
  format.ensure_ascii = reader.get_bool(0, false);
  if (const Value* indent = reader.get(1); indent && !indent->is_none()) {
    if (indent->is_string()) {
      format.indent = indent->str();
    } else {
      const int64_t width = checked_int(*indent, "indent");
      if (width > 1024) fault("tojson indent larger than 1024");
      format.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, width)), ' ');
    }
  }
  format.item_separator = format.indent ? "," : ", ";
  format.key_separator = ": ";
  if (const Value* separators = reader.get(2); separators && !separators->is_none()) {
    if (!separators->is_list() || separators->items().size() != 2 || !separators->items()[0].is_string() ||
        !separators->items()[1].is_string())
      fault("tojson separators must be a pair of strings");
    format.item_separator = separators->items()[0].str();
    format.key_separator = separators->items()[1].str();
  }
  format.sort_keys = reader.get_bool(3, false);
  format.max_bytes = interpreter.max_string();
  return interpreter.make_string(to_json(input, format));
}

Value filter_trim(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("trim", args, {"chars"});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  return interpreter.make_string(strip(s, reader.get_string(0), true, true));
}

Value filter_truncate(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("truncate", args, {"length", "killwords", "end", "leeway"});
  const int64_t length = reader.get_int(0, 255), leeway = reader.get_int(3, 5);
  const std::string end = reader.get_string(2).value_or("...");
  const std::string s = text(interpreter, input);
  const std::vector<uint32_t> codepoints = decode_utf8(s);
  const int64_t end_length = static_cast<int64_t>(codepoint_count(end));
  if (length < end_length) fault("expected length >= " + std::to_string(end_length) + ", got " + std::to_string(length));
  if (leeway < 0) fault("expected leeway >= 0, got " + std::to_string(leeway));
  if (static_cast<int64_t>(codepoints.size()) <= length + leeway) return input.is_string() ? input : interpreter.make_string(s);
  std::string kept = encode_utf8({codepoints.begin(), codepoints.begin() + (length - end_length)});
  if (!reader.get_bool(1, false)) {
    const size_t space = kept.rfind(' ');
    if (space != std::string::npos) kept.resize(space);
  }
  return interpreter.make_string(kept + end);
}

Value filter_unique(Interpreter& interpreter, const Value& input, CallArgs& args) {
  const ArgReader reader("unique", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = reader.get_bool(0, false);
  const std::optional<std::string> attribute = reader.get_string(1);
  std::unordered_set<std::string> seen;
  std::vector<Value> kept;
  for (Value& item : interpreter.iterate(input)) {
    const std::optional<std::string> key = hash_key(sort_key(interpreter, item, attribute, case_sensitive));
    if (!key) fault("unhashable type: '" + type_name(item) + "'");
    if (seen.insert(*key).second) kept.push_back(std::move(item));
  }
  return interpreter.make_iterator(std::move(kept));
}

Value filter_wordcount(Interpreter& interpreter, const Value& input, CallArgs& args) {
  ArgReader("wordcount", args, {});
  const std::string s = text(interpreter, input);
  charge_text(interpreter, s.size());
  int64_t words = 0;
  bool in_word = false;
  for (uint32_t c : decode_utf8(s)) {
    const bool word_char = c == '_' || py_isalpha(c) || py_isdigit(c);
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::integer(words);
}

const std::unordered_map<std::string, FilterFunction>& filters() {
  static const std::unordered_map<std::string, FilterFunction> table = {
      {"abs", filter_abs}, {"attr", filter_attr}, {"batch", filter_batch}, {"capitalize", filter_capitalize},
      {"center", filter_center}, {"count", filter_length}, {"d", filter_default}, {"default", filter_default},
      {"dictsort", filter_dictsort}, {"e", filter_escape}, {"escape", filter_escape}, {"first", filter_first},
      {"float", filter_float}, {"forceescape", filter_escape}, {"indent", filter_indent}, {"int", filter_int},
      {"items", filter_items}, {"join", filter_join}, {"last", filter_last}, {"length", filter_length},
      {"list", filter_list}, {"lower", filter_lower}, {"map", filter_map}, {"max", filter_max}, {"min", filter_min},
      {"pprint", filter_pprint}, {"reject", filter_reject}, {"rejectattr", filter_rejectattr},
      {"replace", filter_replace}, {"reverse", filter_reverse}, {"round", filter_round}, {"safe", filter_safe},
      {"select", filter_select}, {"selectattr", filter_selectattr}, {"sort", filter_sort}, {"string", filter_string},
      {"sum", filter_sum}, {"title", filter_title}, {"tojson", filter_tojson}, {"trim", filter_trim},
      {"truncate", filter_truncate}, {"unique", filter_unique}, {"upper", filter_upper}, {"wordcount", filter_wordcount},
  };
  return table;
}

// ---- tests ----

bool test_integer_parity(const Value& input, int64_t remainder) {
  if (input.kind() == Kind::Int || input.kind() == Kind::Bool) return ((input.as_int() % 2) + 2) % 2 == remainder;
  if (input.kind() == Kind::Float) return std::fmod(std::fmod(input.as_double(), 2.0) + 2.0, 2.0) == static_cast<double>(remainder);
  if (input.is_undefined()) fault(input.undefined_hint());
  fault("unsupported operand type(s) for %: '" + type_name(input) + "' and 'int'");
}

const Value& only_argument(const CallArgs& args, const char* test) {
  if (args.positional.size() != 1 || !args.keyword.empty()) fault(std::string("test '") + test + "' takes one argument");
  return args.positional[0];
}

bool test_case(Interpreter& interpreter, const Value& input, bool upper) {
  const std::string s = text(interpreter, input);
  bool cased = false;
  for (uint32_t c : decode_utf8(s)) {
    if (upper ? py_upper(c) != c : py_lower(c) != c) return false;
    cased = cased || py_upper(c) != c || py_lower(c) != c;
  }
  return cased;
}

bool run_test(Interpreter& interpreter, const std::string& name, const Value& input, CallArgs& args) {
  const Kind kind = input.kind();
  if (name == "defined") return kind != Kind::Undefined;
  if (name == "undefined") return kind == Kind::Undefined;
  if (name == "none") return kind == Kind::None;
  if (name == "boolean") return kind == Kind::Bool;
  if (name == "true") return kind == Kind::Bool && input.as_bool();
  if (name == "false") return kind == Kind::Bool && !input.as_bool();
  if (name == "integer") return kind == Kind::Int;
  if (name == "float") return kind == Kind::Float;
  if (name == "number") return input.is_number();
  if (name == "string") return kind == Kind::String;
  if (name == "mapping") return kind == Kind::Dict;
  if (name == "iterable") return kind == Kind::String || kind == Kind::List || kind == Kind::Dict || kind == Kind::Undefined;
  if (name == "sequence") return kind == Kind::String || input.is_sequence() || kind == Kind::Dict || kind == Kind::Undefined;
  if (name == "callable") return kind == Kind::Function || kind == Kind::Undefined;
  if (name == "escaped") return false;
  if (name == "odd") return test_integer_parity(input, 1);
  if (name == "even") return test_integer_parity(input, 0);
  if (name == "lower") return test_case(interpreter, input, false);
  if (name == "upper") return test_case(interpreter, input, true);
  if (name == "filter") return input.is_string() && filters().count(input.str()) > 0;
  if (name == "test") {
    static const char* const kTests[] = {"defined", "undefined", "none", "boolean", "true", "false", "integer", "float",
                                         "number", "string", "mapping", "iterable", "sequence", "callable", "escaped",
                                         "odd", "even", "lower", "upper", "filter", "test", "divisibleby", "sameas",
                                         "in", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=",
                                         "gt", "greaterthan", ">", "ge", ">="};
    return input.is_string() && std::any_of(std::begin(kTests), std::end(kTests), [&](const char* t) { return input.str() == t; });
  }
  if (name == "divisibleby") {
    const Value& divisor = only_argument(args, "divisibleby");
    if (input.is_undefined()) fault(input.undefined_hint());
    if (!input.is_number() || !divisor.is_number()) fault("divisibleby needs numbers");
    if (divisor.as_double() == 0.0) fault("integer division or modulo by zero");
    if (input.kind() != Kind::Float && divisor.kind() != Kind::Float)
      return divisor.as_int() == -1 || input.as_int() % divisor.as_int() == 0;
    return std::fmod(input.as_double(), divisor.as_double()) == 0.0;
  }
  if (name == "sameas") {
    const Value& other = only_argument(args, "sameas");
    if (input.kind() != other.kind()) return false;
    if (input.identity() || other.identity()) return input.identity() == other.identity();
    return equals(input, other);
  }
  if (name == "in") return contains(interpreter, only_argument(args, "in"), input);
  if (name == "eq" || name == "equalto" || name == "==") return equals(input, only_argument(args, "eq"));
  if (name == "ne" || name == "!=") return !equals(input, only_argument(args, "ne"));
  if (name == "lt" || name == "lessthan" || name == "<") return compare(input, only_argument(args, "lt")) < 0;
  if (name == "le" || name == "<=") return compare(input, only_argument(args, "le")) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(input, only_argument(args, "gt")) > 0;
  if (name == "ge" || name == ">=") return compare(input, only_argument(args, "ge")) >= 0;
  fault("no test named '" + name + "'");
}

// ---- methods ----

const char* const kStringMethods[] = {
    "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "lower", "upper",
    "title", "capitalize", "casefold", "swapcase", "replace", "find", "rfind", "index", "rindex", "count", "join",
    "format", "isalnum", "isalpha", "isdigit", "isnumeric", "isdecimal", "isspace", "islower", "isupper",
    "center", "ljust", "rjust", "zfill", "partition", "rpartition", "removeprefix", "removesuffix"};
const char* const kDictMethods[] = {"items", "keys", "values", "get", "copy"};
const char* const kDictMutators[] = {"update", "pop", "popitem", "setdefault", "clear"};
const char* const kListMethods[] = {"index", "count", "copy"};
const char* const kListMutators[] = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"};

template <size_t N>
bool listed(const char* const (&names)[N], const std::string& name) {
  return std::any_of(std::begin(names), std::end(names), [&](const char* n) { return name == n; });
}

// Python's str.find family over code point positions.
Value find_in(Interpreter& interpreter, const std::string& s, CallArgs& args, const char* method, bool from_right, bool must_find) {
  const ArgReader reader(method, args, {"sub", "start", "end"});
  if (!reader.get(0) || !reader.get(0)->is_string()) fault(std::string(method) + "() needs a string argument");
  const std::string& needle = reader.get(0)->str();
  charge_text(interpreter, s.size());
  const std::vector<uint32_t> haystack = decode_utf8(s), pattern = decode_utf8(needle);
  const int64_t n = static_cast<int64_t>(haystack.size());
  const auto clamp = [&](int64_t index) { return index < 0 ? std::max<int64_t>(0, index + n) : std::min(index, n); };
  const int64_t start = clamp(reader.get_int(1, 0)), end = clamp(reader.get_int(2, n));
  const int64_t m = static_cast<int64_t>(pattern.size());
  int64_t found = -1;
  for (int64_t k = 0; start + k + m <= end; ++k) {
    const int64_t at = from_right ? end - m - k : start + k;
    if (std::equal(pattern.begin(), pattern.end(), haystack.begin() + at)) {
      found = at;
      break;
    }
  }
  if (found < 0 && must_find) fault("substring not found");
  return Value::integer(found);
}

bool affix_matches(const std::string& s, const Value& affix, bool prefix, const char* method) {
  const auto matches = [&](const Value& candidate) {
    if (!candidate.is_string()) fault(std::string(method) + " first arg must be str or a tuple of str, not " + type_name(candidate));
    const std::string& a = candidate.str();
    return a.size() <= s.size() && (prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0);
  };
  if (affix.is_list() && affix.list().tuple) return std::any_of(affix.items().begin(), affix.items().end(), matches);
  return matches(affix);
}

Value string_list(Interpreter& interpreter, std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (std::string& part : parts) items.push_back(Value::string(std::move(part)));
  return interpreter.make_list(std::move(items));
}

// str.format with automatic or explicit field numbers and keyword names ({} {0} {name}); format
// specifications are not supported.
Value string_format(Interpreter& interpreter, const std::string& format, CallArgs& args) {
  std::string out;
  size_t automatic = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if ((c == '{' || c == '}') && i + 1 < format.size() && format[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c == '}') fault("Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string::npos) fault("Single '{' encountered in format string");
    std::string field = format.substr(i + 1, close - i - 1);
    bool use_repr = false;
    if (field.size() >= 2 && field[field.size() - 2] == '!') {
      use_repr = field.back() == 'r';
      field.resize(field.size() - 2);
    }
    if (field.find(':') != std::string::npos || field.find('[') != std::string::npos || field.find('.') != std::string::npos)
      fault("format specifications and field lookups in str.format are not supported");
    const Value* value = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      const size_t index = field.empty() ? automatic++ : static_cast<size_t>(std::stoul(field.substr(0, 9)));
      if (index >= args.positional.size()) fault("Replacement index " + std::to_string(index) + " out of range for positional args tuple");
      value = &args.positional[index];
    } else {
      for (const auto& [name, keyword_value] : args.keyword)
        if (name == field) value = &keyword_value;
      if (!value) fault("KeyError: '" + field + "'");
    }
    if (use_repr)
      out += repr(*value, interpreter.max_string());
    else
      append_str(out, *value, interpreter.max_string());
    if (out.size() > interpreter.max_string()) fault_too_long(interpreter.max_string());
    i = close;
  }
  return interpreter.make_string(std::move(out));
}

Value call_string_method(Interpreter& interpreter, const std::string& s, const std::string& name, CallArgs& args) {
  charge_text(interpreter, s.size());
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const ArgReader reader(name, args, {"chars"});
    return interpreter.make_string(strip(s, reader.get_string(0), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    const ArgReader reader(name, args, {"sep", "maxsplit"});
    const std::optional<std::string> separator = reader.get_string(0);
    if (separator && separator->empty()) fault("empty separator");
    const int64_t max_splits = reader.get_int(1, -1);
    return string_list(interpreter, name == "split" ? split(s, separator, max_splits) : rsplit(s, separator, max_splits));
  }
  if (name == "splitlines") {
    const ArgReader reader(name, args, {"keepends"});
    return string_list(interpreter, splitlines(s, reader.get_bool(0, false)));
  }
  if (name == "startswith" || name == "endswith") {
    const ArgReader reader(name, args, {"prefix"});
    if (!reader.get(0)) fault(name + "() takes at least 1 argument (0 given)");
    return Value::boolean(affix_matches(s, *reader.get(0), name == "startswith", name.c_str()));
  }
  if (name == "lower" || name == "casefold" || name == "upper" || name == "title" || name == "capitalize" || name == "swapcase") {
    ArgReader(name, args, {});
    if (name == "lower" || name == "casefold") return interpreter.make_string(to_lower(s));
    if (name == "upper") return interpreter.make_string(to_upper(s));
    if (name == "title") return interpreter.make_string(python_title(s));
    if (name == "capitalize") return interpreter.make_string(capitalize(s));
    std::string out;
    for (uint32_t c : decode_utf8(s)) append_codepoint(out, py_upper(c) != c ? py_upper(c) : py_lower(c));
    return interpreter.make_string(std::move(out));
  }
  if (name == "replace") {
    const ArgReader reader(name, args, {"old", "new", "count"});
    const std::optional<std::string> old_text = reader.get_string(0), new_text = reader.get_string(1);
    if (!old_text || !new_text) fault("replace() needs the old and new strings");
    return replace_text(interpreter, s, *old_text, *new_text, reader.get_int(2, -1));
  }
  if (name == "find") return find_in(interpreter, s, args, "find", false, false);
  if (name == "rfind") return find_in(interpreter, s, args, "rfind", true, false);
  if (name == "index") return find_in(interpreter, s, args, "index", false, true);
  if (name == "rindex") return find_in(interpreter, s, args, "rindex", true, true);
  if (name == "count") {
    const ArgReader reader(name, args, {"sub"});
    const std::optional<std::string> needle = reader.get_string(0);
    if (!needle) fault("count() needs a string argument");
    return Value::integer(static_cast<int64_t>(count_occurrences(s, *needle)));
  }
  if (name == "join") {
    const ArgReader reader(name, args, {"iterable"});
    if (!reader.get(0)) fault("join() takes exactly one argument (0 given)");
    std::string out;
    bool first = true;
    for (const Value& item : interpreter.iterate(*reader.get(0))) {
      if (!item.is_string()) fault("sequence item: expected str instance, " + type_name(item) + " found");
      if (out.size() + s.size() + item.str().size() > interpreter.max_string()) fault_too_long(interpreter.max_string());
      if (!first) out += s;
      first = false;
      out += item.str();
    }
    return interpreter.make_string(std::move(out));
  }
  if (name == "format") return string_format(interpreter, s, args);
  if (name.rfind("is", 0) == 0) {
    ArgReader(name, args, {});
    const std::vector<uint32_t> codepoints = decode_utf8(s);
    if (name == "islower" || name == "isupper") return Value::boolean(test_case(interpreter, Value::string(s), name == "isupper"));
    if (codepoints.empty()) return Value::boolean(false);
    const auto all = [&](auto predicate) { return Value::boolean(std::all_of(codepoints.begin(), codepoints.end(), predicate)); };
    if (name == "isalnum") return all([](uint32_t c) { return py_isalpha(c) || py_isdigit(c); });
    if (name == "isalpha") return all(py_isalpha);
    if (name == "isspace") return all(py_isspace);
    return all(py_isdigit);  // isdigit, isnumeric, isdecimal
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    const ArgReader reader(name, args, {"width", "fillchar"});
    const std::string fill = reader.get_string(1).value_or(" ");
    if (codepoint_count(fill) != 1) fault("The fill character must be exactly one character long");
    return pad(interpreter, s, reader.get_int(0, 0), fill, name == "center" ? '^' : name == "ljust" ? '<' : '>');
  }
  if (name == "zfill") {
    const ArgReader reader(name, args, {"width"});
    const int64_t width = reader.get_int(0, 0), length = static_cast<int64_t>(codepoint_count(s));
    if (width <= length) return interpreter.make_string(s);
    if (static_cast<uint64_t>(width) > interpreter.max_string()) fault_too_long(interpreter.max_string());
    const bool sign = !s.empty() && (s[0] == '+' || s[0] == '-');
    return interpreter.make_string((sign ? s.substr(0, 1) : "") + std::string(static_cast<size_t>(width - length), '0') + s.substr(sign ? 1 : 0));
  }
  if (name == "partition" || name == "rpartition") {
    const ArgReader reader(name, args, {"sep"});
    const std::optional<std::string> separator = reader.get_string(0);
    if (!separator || separator->empty()) fault("empty separator");
    const size_t at = name == "partition" ? s.find(*separator) : s.rfind(*separator);
    if (at == std::string::npos) {
      const bool left = name == "partition";
      return interpreter.make_list({Value::string(left ? s : ""), Value::string(""), Value::string(left ? "" : s)}, true);
    }
    return interpreter.make_list({Value::string(s.substr(0, at)), Value::string(*separator), Value::string(s.substr(at + separator->size()))}, true);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const ArgReader reader(name, args, {"affix"});
    const std::optional<std::string> affix = reader.get_string(0);
    if (!affix) fault(name + "() needs a string argument");
    const bool prefix = name == "removeprefix";
    if (!affix_matches(s, Value::string(*affix), prefix, name.c_str())) return interpreter.make_string(s);
    return interpreter.make_string(prefix ? s.substr(affix->size()) : s.substr(0, s.size() - affix->size()));
  }
  fault("'str' object has no attribute '" + name + "'");
}

Value call_dict_method(Interpreter& interpreter, const Value& object, const std::string& name, CallArgs& args) {
  const DictData& dict = object.dict();
  if (name == "get") {
    const ArgReader reader(name, args, {"key", "default"});
    if (!reader.get(0)) fault("get expected at least 1 argument, got 0");
    const Value* found = dict_find(dict, *reader.get(0));
    return found ? *found : reader.get_or(1, Value::none());
  }
  ArgReader(name, args, {});
  if (name == "copy") return object;
  std::vector<Value> items;
  for (const auto& [key, value] : dict.entries) {
    if (name == "keys")
      items.push_back(key);
    else if (name == "values")
      items.push_back(value);
    else
      items.push_back(interpreter.make_list({key, value}, true));
  }
  interpreter.charge_steps(items.size());
  return interpreter.make_list(std::move(items));
}

Value call_list_method(Interpreter& interpreter, const Value& object, const std::string& name, CallArgs& args) {
  if (name == "copy") {
    ArgReader(name, args, {});
    return object;
  }
  const ArgReader reader(name, args, {"value"});
  if (!reader.get(0)) fault(name + "() takes exactly one argument (0 given)");
  const auto& items = object.items();
  interpreter.charge_steps(items.size());
  if (name == "count") return Value::integer(std::count_if(items.begin(), items.end(), [&](const Value& v) { return equals(v, *reader.get(0)); }));
  for (size_t i = 0; i < items.size(); ++i)
    if (equals(items[i], *reader.get(0))) return Value::integer(static_cast<int64_t>(i));
  fault(repr(*reader.get(0), interpreter.max_string()) + " is not in list");
}

// ---- global functions ----

class GlobalFunction : public Function {
 public:
  using Body = Value (*)(Interpreter&, CallArgs&);
  GlobalFunction(std::string name, Body body) : name_(std::move(name)), body_(body) {}
  Value call(Interpreter& interpreter, CallArgs& args) const override { return body_(interpreter, args); }
  std::string repr() const override { return "<built-in function " + name_ + ">"; }

 private:
  std::string name_;
  Body body_;
};

Value global_range(Interpreter& interpreter, CallArgs& args) {
  if (!args.keyword.empty()) fault("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) fault("range expected 1 to 3 arguments, got " + std::to_string(p.size()));
  int64_t start = 0, stop = 0, step = 1;
  if (p.size() == 1) {
    stop = checked_int(p[0], "range() argument");
  } else {
    start = checked_int(p[0], "range() argument");
    stop = checked_int(p[1], "range() argument");
    if (p.size() == 3) step = checked_int(p[2], "range() argument");
  }
  if (step == 0) fault("range() arg 3 must not be zero");
  const long double span = step > 0 ? static_cast<long double>(stop) - start : static_cast<long double>(start) - stop;
  const long double count = span <= 0 ? 0 : std::ceil(span / std::fabs(static_cast<long double>(step)));
  if (count > interpreter.limits().max_range)
    fault("range() of " + std::to_string(static_cast<uint64_t>(count)) + " items is larger than the limit of " +
          std::to_string(interpreter.limits().max_range));
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < static_cast<int64_t>(count); ++k) items.push_back(Value::integer(start + k * step));
  interpreter.charge_steps(items.size());
  return interpreter.make_list(std::move(items));
}

std::vector<std::pair<std::string, Value>> keyword_entries(const CallArgs& args, const char* function) {
  std::vector<std::pair<std::string, Value>> entries;
  if (args.positional.size() > 1) fault(std::string(function) + "() takes at most 1 positional argument");
  if (args.positional.size() == 1) {
    if (!args.positional[0].is_dict()) fault(std::string(function) + "() positional argument must be a mapping");
    for (const auto& [key, value] : args.positional[0].dict().entries) {
      if (!key.is_string()) fault(std::string(function) + "() keys must be strings");
      entries.emplace_back(key.str(), value);
    }
  }
  entries.insert(entries.end(), args.keyword.begin(), args.keyword.end());
  return entries;
}

Value global_namespace(Interpreter& interpreter, CallArgs& args) {
  auto entries = keyword_entries(args, "namespace");
  for (const auto& entry : entries)
    if (entry.second.holds_reference()) fault("a namespace attribute cannot hold a namespace, macro or function");
  interpreter.charge_bytes(entries.size() * sizeof(Value));
  return Value::make_namespace(std::move(entries));
}

Value global_dict(Interpreter& interpreter, CallArgs& args) {
  std::vector<std::pair<Value, Value>> entries;
  for (auto& [name, value] : keyword_entries(args, "dict")) entries.emplace_back(Value::string(name), std::move(value));
  interpreter.charge_bytes(entries.size() * 2 * sizeof(Value));
  return Value::dict(std::move(entries));
}

Value global_raise_exception(Interpreter& interpreter, CallArgs& args) {
  const ArgReader reader("raise_exception", args, {"message"});
  throw TemplateRaisedError(reader.get(0) ? to_str(*reader.get(0), interpreter.max_string()) : "");
}

Value global_strftime_now(Interpreter& interpreter, CallArgs& args) {
  const ArgReader reader("strftime_now", args, {"format"});
  const std::optional<std::string> format = reader.get_string(0);
  if (!format) fault("strftime_now() needs a format string");
  if (format->size() > 1024) fault("strftime_now() format longer than 1024 bytes");
  if (format->find('\0') != std::string::npos) fault("embedded null character in strftime_now() format");
  std::tm now{};
  if (interpreter.options().now) {
    now = interpreter.options().now();
  } else {
    const std::time_t seconds = std::time(nullptr);
    localtime_r(&seconds, &now);
  }
  if (format->empty()) return Value::string("");
  std::string buffer(format->size() * 128 + 64, '\0');
  const size_t length = std::strftime(buffer.data(), buffer.size(), format->c_str(), &now);
  buffer.resize(length);
  return interpreter.make_string(std::move(buffer));
}

}  // namespace

Value apply_filter(Interpreter& interpreter, const std::string& name, const Value& input, CallArgs& args) {
  const auto found = filters().find(name);
  if (found == filters().end()) fault("no filter named '" + name + "'");
  return found->second(interpreter, input, args);
}

bool apply_test(Interpreter& interpreter, const std::string& name, const Value& input, CallArgs& args) {
  return run_test(interpreter, name, input, args);
}

MethodKind method_kind(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Kind::String: return listed(kStringMethods, name) ? MethodKind::Safe : MethodKind::None;
    case Kind::Dict:
      if (listed(kDictMethods, name)) return MethodKind::Safe;
      return listed(kDictMutators, name) ? MethodKind::Unsafe : MethodKind::None;
    case Kind::List:
      if (object.is_iterator()) return MethodKind::None;
      if (listed(kListMethods, name) && (name != "copy" || !object.list().tuple)) return MethodKind::Safe;
      return !object.list().tuple && listed(kListMutators, name) ? MethodKind::Unsafe : MethodKind::None;
    default: return MethodKind::None;
  }
}

Value call_method(Interpreter& interpreter, const Value& object, const std::string& name, CallArgs& args) {
  if (object.is_string()) return call_string_method(interpreter, object.str(), name, args);
  if (object.is_dict()) return call_dict_method(interpreter, object, name, args);
  return call_list_method(interpreter, object, name, args);
}

void add_globals(Scope& globals) {
  const auto add = [&](const char* name, GlobalFunction::Body body) {
    globals.set(name, Value::function(std::make_shared<GlobalFunction>(name, body)));
  };
  add("range", global_range);
  add("namespace", global_namespace);
  add("dict", global_dict);
  add("raise_exception", global_raise_exception);
  add("strftime_now", global_strftime_now);
}

bool contains(Interpreter& interpreter, const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::Undefined: return false;
    case Kind::String:
      if (!item.is_string()) fault("'in <string>' requires string as left operand, not " + type_name(item));
      charge_text(interpreter, container.str().size());
      return container.str().find(item.str()) != std::string::npos;
    case Kind::List:
      interpreter.charge_steps(container.items().size());
      return std::any_of(container.items().begin(), container.items().end(), [&](const Value& v) { return equals(v, item); });
    case Kind::Dict:
      if (!hash_key(item)) fault("unhashable type: '" + type_name(item) + "'");
      return dict_find(container.dict(), item) != nullptr;
    default: fault("argument of type '" + type_name(container) + "' is not iterable");
  }
}

}  // namespace fi::jinja
