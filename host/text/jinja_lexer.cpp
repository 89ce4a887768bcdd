#include "host/text/jinja_lexer.h"

#include <algorithm>
#include <charconv>

#include "host/text/jinja_text.h"

namespace fi::jinja {

void syntax_error(SourcePos pos, const std::string& message) {
  throw TemplateError("chat template syntax error at line " + std::to_string(pos.line) + ", column " +
                      std::to_string(pos.column) + ": " + message);
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }
bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  Lexer(std::string_view source, const Syntax& syntax) : syntax_(syntax) {
    source_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        source_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        source_ += source[i];
      }
    }
    if (!source_.empty() && source_.back() == '\n') source_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i)
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    while (pos_ < source_.size()) {
      const size_t tag = find_tag(pos_);
      if (tag == std::string::npos) {
        emit_data(source_.substr(pos_), pos_);
        break;
      }
      const char opener = source_[tag + 1];
      const char sign = tag + 2 < source_.size() && (source_[tag + 2] == '-' || source_[tag + 2] == '+') ? source_[tag + 2] : 0;
      size_t raw_body = 0;
      const bool raw = opener == '%' && match_raw_begin(tag, raw_body);
      emit_data(strip_before_tag(source_.substr(pos_, tag - pos_), sign, opener != '{'), pos_);
      pos_ = tag + 2 + (sign ? 1 : 0);
      line_starting_ = false;
      if (raw) {
        lex_raw(tag, raw_body);
      } else if (opener == '#') {
        lex_comment(tag);
      } else {
        lex_tag(opener == '{' ? TokenType::VariableBegin : TokenType::BlockBegin, tag);
      }
    }
    tokens_.push_back(Token{TokenType::End, "", 0, 0.0, position(source_.size())});
    return std::move(tokens_);
  }

 private:
  // Line and column (in code points) of an offset. Tokens ask in increasing order, so a cursor
  // walks forward once over the source; only error messages may look back.
  SourcePos position(size_t offset) {
    if (offset < cursor_offset_) {
      const auto line = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
      const size_t start = *line;
      return {static_cast<int>(line - line_starts_.begin()) + 1,
              static_cast<int>(codepoint_count(std::string_view(source_).substr(start, offset - start))) + 1};
    }
    for (; cursor_offset_ < offset && cursor_offset_ < source_.size(); ++cursor_offset_) {
      const char c = source_[cursor_offset_];
      if (c == '\n') {
        ++cursor_.line;
        cursor_.column = 1;
      } else if ((static_cast<uint8_t>(c) & 0xC0) != 0x80) {
        ++cursor_.column;
      }
    }
    return cursor_;
  }

  size_t find_tag(size_t from) const {
    for (size_t i = source_.find('{', from); i != std::string::npos && i + 1 < source_.size(); i = source_.find('{', i + 1)) {
      const char next = source_[i + 1];
      if (next == '{' || next == '%' || next == '#') return i;
    }
    return std::string::npos;
  }

  // Whitespace that Python's \s matches, as a length in bytes (0 if none) at `at`.
  size_t space_length(size_t at) const {
    if (at >= source_.size()) return 0;
    if (static_cast<uint8_t>(source_[at]) < 0x80) return is_ascii_space(source_[at]) || (source_[at] >= 0x1C && source_[at] <= 0x1F) ? 1 : 0;
    const size_t length = std::min<size_t>(4, source_.size() - at);
    const std::vector<uint32_t> codepoints = decode_utf8(std::string_view(source_).substr(at, length));
    if (codepoints.empty() || !py_isspace(codepoints[0])) return 0;
    std::string encoded;
    append_codepoint(encoded, codepoints[0]);
    return encoded.size();
  }

  // Skips \s*; returns whether the last character skipped was a newline.
  bool skip_space() {
    bool newline_last = false;
    for (size_t length; (length = space_length(pos_)) > 0; pos_ += length) newline_last = source_[pos_] == '\n';
    return newline_last;
  }

  // The text before a tag, after `-` stripping or lstrip_blocks (blocks and comments only).
  std::string strip_before_tag(std::string text, char sign, bool lstrip_applies) const {
    if (sign == '-') return strip(text, std::nullopt, false, true);
    if (sign == '+' || !syntax_.lstrip_blocks || !lstrip_applies) return text;
    const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (line_start == 0 && !line_starting_) return text;
    const std::string_view tail = std::string_view(text).substr(line_start);
    if (tail.empty() || !strip(tail, std::nullopt, true, false).empty()) return text;
    return text.substr(0, line_start);
  }

  void emit_data(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back(Token{TokenType::Data, std::move(text), 0, 0.0, position(offset)});
  }

  // {% raw %}: `{%[-+]?\s*raw\s*(-%}\s*|%})`; sets body_start after it.
  bool match_raw_begin(size_t tag, size_t& body_start) const {
    size_t i = tag + 2;
    if (i < source_.size() && (source_[i] == '-' || source_[i] == '+')) ++i;
    while (i < source_.size() && is_ascii_space(source_[i])) ++i;
    if (source_.compare(i, 3, "raw") != 0) return false;
    i += 3;
    while (i < source_.size() && is_ascii_space(source_[i])) ++i;
    if (source_.compare(i, 3, "-%}") == 0) {
      i += 3;
      while (i < source_.size() && is_ascii_space(source_[i])) ++i;
    } else if (source_.compare(i, 2, "%}") == 0) {
      i += 2;
    } else {
      return false;
    }
    body_start = i;
    return true;
  }

  void lex_raw(size_t tag, size_t body_start) {
    const bool began_on_newline = body_start > 0 && source_[body_start - 1] == '\n';
    for (size_t at = source_.find("{%", body_start); at != std::string::npos; at = source_.find("{%", at + 2)) {
      size_t i = at + 2;
      const char sign = i < source_.size() && (source_[i] == '-' || source_[i] == '+') ? source_[i] : 0;
      if (sign) ++i;
      while (i < source_.size() && is_ascii_space(source_[i])) ++i;
      if (source_.compare(i, 6, "endraw") != 0) continue;
      i += 6;
      while (i < source_.size() && is_ascii_space(source_[i])) ++i;
      pos_ = i;
      if (!end_of_block()) continue;
      const bool ended_on_newline = line_starting_;
      line_starting_ = began_on_newline;
      emit_data(strip_before_tag(source_.substr(body_start, at - body_start), sign, true), body_start);
      line_starting_ = ended_on_newline;
      return;
    }
    syntax_error(position(tag), "missing end of raw directive");
  }

  // Matches a block end (`+%}`, `-%}\s*` or `%}` with trim_blocks' newline) at pos_.
  bool end_of_block() {
    if (source_.compare(pos_, 3, "+%}") == 0) {
      pos_ += 3;
      line_starting_ = false;
      return true;
    }
    if (source_.compare(pos_, 3, "-%}") == 0) {
      pos_ += 3;
      line_starting_ = skip_space();
      return true;
    }
    if (source_.compare(pos_, 2, "%}") == 0) {
      pos_ += 2;
      line_starting_ = false;
      if (syntax_.trim_blocks && pos_ < source_.size() && source_[pos_] == '\n') {
        ++pos_;
        line_starting_ = true;
      }
      return true;
    }
    return false;
  }

  void lex_comment(size_t tag) {
    const size_t end = source_.find("#}", pos_);
    if (end == std::string::npos) syntax_error(position(tag), "missing end of comment tag");
    const char sign = end > pos_ && (source_[end - 1] == '-' || source_[end - 1] == '+') ? source_[end - 1] : 0;
    pos_ = end + 2;
    line_starting_ = false;
    if (sign == '-') {
      line_starting_ = skip_space();
    } else if (!sign && syntax_.trim_blocks && pos_ < source_.size() && source_[pos_] == '\n') {
      ++pos_;
      line_starting_ = true;
    }
  }

  void lex_tag(TokenType begin, size_t tag) {
    tokens_.push_back(Token{begin, "", 0, 0.0, position(tag)});
    const TokenType end_type = begin == TokenType::VariableBegin ? TokenType::VariableEnd : TokenType::BlockEnd;
    std::vector<char> open_brackets;  // closing characters expected, innermost last
    while (true) {
      while (pos_ < source_.size() && space_length(pos_) > 0) pos_ += space_length(pos_);
      if (pos_ >= source_.size())
        syntax_error(position(tag), begin == TokenType::VariableBegin ? "unexpected end of template, expected '}}'"
                                                                       : "unexpected end of template, expected '%}'");
      const size_t start = pos_;
      if (open_brackets.empty()) {
        if (end_type == TokenType::BlockEnd && end_of_block()) {
          tokens_.push_back(Token{end_type, "", 0, 0.0, position(start)});
          return;
        }
        if (end_type == TokenType::VariableEnd) {
          if (source_.compare(pos_, 3, "-}}") == 0) {
            pos_ += 3;
            line_starting_ = skip_space();
            tokens_.push_back(Token{end_type, "", 0, 0.0, position(start)});
            return;
          }
          if (source_.compare(pos_, 2, "}}") == 0) {
            pos_ += 2;
            line_starting_ = false;
            tokens_.push_back(Token{end_type, "", 0, 0.0, position(start)});
            return;
          }
        }
      }
      const char c = source_[pos_];
      if (is_digit(c)) {
        lex_number();
      } else if (is_name_start(c)) {
        while (pos_ < source_.size() && is_name_char(source_[pos_])) ++pos_;
        tokens_.push_back(Token{TokenType::Name, source_.substr(start, pos_ - start), 0, 0.0, position(start)});
      } else if (c == '\'' || c == '"') {
        lex_string();
      } else {
        lex_operator(open_brackets);
      }
    }
  }

  // Digits with single underscores between them, from pos_.
  bool digits(bool (*accept)(char)) {
    const size_t start = pos_;
    while (pos_ < source_.size() && (accept(source_[pos_]) || (source_[pos_] == '_' && pos_ > start && pos_ + 1 < source_.size() && accept(source_[pos_ + 1]))))
      ++pos_;
    return pos_ > start;
  }

  void lex_number() {
    const size_t start = pos_;
    const SourcePos where = position(start);
    const bool after_dot = start > 0 && source_[start - 1] == '.';
    // A float needs a fraction or an exponent; Jinja2 does not read one right after a dot.
    if (!after_dot) {
      digits(is_digit);
      const size_t whole_end = pos_;
      bool fraction = false, exponent = false;
      if (pos_ + 1 < source_.size() && source_[pos_] == '.' && is_digit(source_[pos_ + 1])) {
        ++pos_;
        digits(is_digit);
        fraction = true;
      }
      const size_t before_exponent = pos_;
      if (pos_ < source_.size() && (source_[pos_] == 'e' || source_[pos_] == 'E')) {
        ++pos_;
        if (pos_ < source_.size() && (source_[pos_] == '+' || source_[pos_] == '-')) ++pos_;
        exponent = pos_ < source_.size() && is_digit(source_[pos_]) && digits(is_digit);
        if (!exponent) pos_ = before_exponent;
      }
      if (fraction || exponent) {
        std::string text;
        for (size_t i = start; i < pos_; ++i)
          if (source_[i] != '_') text += source_[i];
        double value = 0.0;
        std::from_chars(text.data(), text.data() + text.size(), value);
        tokens_.push_back(Token{TokenType::Float, source_.substr(start, pos_ - start), 0, value, where});
        return;
      }
      pos_ = whole_end;
    }
    pos_ = start;
    int base = 10;
    if (source_[pos_] == '0' && pos_ + 2 < source_.size()) {
      const char prefix = static_cast<char>(source_[pos_ + 1] | 0x20);
      const auto is_base_digit = [&](char d) {
        if (prefix == 'b') return d == '0' || d == '1';
        if (prefix == 'o') return d >= '0' && d <= '7';
        return is_digit(d) || ((d | 0x20) >= 'a' && (d | 0x20) <= 'f');
      };
      const size_t first = pos_ + 2 + (source_[pos_ + 2] == '_' ? 1 : 0);
      if ((prefix == 'b' || prefix == 'o' || prefix == 'x') && first < source_.size() && is_base_digit(source_[first])) {
        base = prefix == 'b' ? 2 : prefix == 'o' ? 8 : 16;
        pos_ = first;
        while (pos_ < source_.size() && (is_base_digit(source_[pos_]) || (source_[pos_] == '_' && pos_ + 1 < source_.size() && is_base_digit(source_[pos_ + 1]))))
          ++pos_;
      }
    }
    if (base == 10) {
      if (source_[pos_] == '0') {
        ++pos_;
        while (pos_ < source_.size() && (source_[pos_] == '0' || (source_[pos_] == '_' && pos_ + 1 < source_.size() && source_[pos_ + 1] == '0'))) ++pos_;
      } else {
        digits(is_digit);
      }
    }
    std::string text;
    for (size_t i = base == 10 ? start : start + 2; i < pos_; ++i)
      if (source_[i] != '_') text += source_[i];
    int64_t value = 0;
    const auto result = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (result.ec != std::errc()) syntax_error(where, "integer literal out of range: " + source_.substr(start, pos_ - start));
    tokens_.push_back(Token{TokenType::Integer, source_.substr(start, pos_ - start), value, 0.0, where});
  }

  static int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    c = static_cast<char>(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  }

  // Python's unicode-escape decoding of the characters between the quotes.
  void lex_string() {
    const size_t start = pos_;
    const char quote = source_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= source_.size()) syntax_error(position(start), "unterminated string");
      const char c = source_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= source_.size()) syntax_error(position(start), "unterminated string");
      const char e = source_[pos_++];
      switch (e) {
        case '\n': break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const int length = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t codepoint = 0;
          for (int k = 0; k < length; ++k) {
            const int digit = pos_ < source_.size() ? hex_value(source_[pos_]) : -1;
            if (digit < 0) syntax_error(position(pos_), std::string("truncated \\") + e + " escape in string");
            codepoint = codepoint * 16 + static_cast<uint32_t>(digit);
            ++pos_;
          }
          if (codepoint > 0x10FFFF) syntax_error(position(start), "illegal Unicode character in string escape");
          append_codepoint(value, codepoint);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t codepoint = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && pos_ < source_.size() && source_[pos_] >= '0' && source_[pos_] <= '7'; ++k)
              codepoint = codepoint * 8 + static_cast<uint32_t>(source_[pos_++] - '0');
            append_codepoint(value, codepoint);
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    tokens_.push_back(Token{TokenType::String, std::move(value), 0, 0.0, position(start)});
  }

  void lex_operator(std::vector<char>& open_brackets) {
    static const char* const kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]",
                                             "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
    const size_t start = pos_;
    for (const char* op : kOperators) {
      const std::string_view text(op);
      if (source_.compare(pos_, text.size(), text) != 0) continue;
      pos_ += text.size();
      const char c = text[0];
      if (text.size() == 1 && (c == '(' || c == '[' || c == '{')) {
        open_brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (text.size() == 1 && (c == ')' || c == ']' || c == '}')) {
        if (open_brackets.empty()) syntax_error(position(start), std::string("unexpected '") + c + "'");
        if (open_brackets.back() != c)
          syntax_error(position(start), std::string("unexpected '") + c + "', expected '" + open_brackets.back() + "'");
        open_brackets.pop_back();
      }
      tokens_.push_back(Token{TokenType::Operator, std::string(text), 0, 0.0, position(start)});
      return;
    }
    std::string shown;
    append_codepoint(shown, decode_utf8(std::string_view(source_).substr(pos_, std::min<size_t>(4, source_.size() - pos_)))[0]);
    syntax_error(position(start), "unexpected character '" + shown + "'");
  }

  const Syntax& syntax_;
  std::string source_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  size_t cursor_offset_ = 0;
  SourcePos cursor_{1, 1};
  bool line_starting_ = true;  // the last thing consumed ended with a newline (for lstrip_blocks)
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const Syntax& syntax) { return Lexer(source, syntax).run(); }

}  // namespace fi::jinja
