#pragma once
// Splits template source into text and the tokens inside {{ }} and {% %}, applying whitespace
// control ({%- -%} {{- -}} {#- -#}, trim_blocks, lstrip_blocks) exactly as Jinja2's lexer does.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "host/text/jinja.h"

namespace fi::jinja {

struct SourcePos {
  int line = 0, column = 0;
};
[[noreturn]] void syntax_error(SourcePos pos, const std::string& message);

enum class TokenType { Data, VariableBegin, VariableEnd, BlockBegin, BlockEnd, Name, String, Integer, Float, Operator, End };

struct Token {
  TokenType type;
  std::string text;  // Data: the text; String: the unescaped value; Name and Operator: as written
  int64_t integer = 0;
  double number = 0.0;
  SourcePos pos;
};

// The source with newlines normalised to \n and one trailing newline dropped, as Jinja2 reads it,
// then tokenized. Ends with an End token.
std::vector<Token> tokenize(std::string_view source, const Syntax& syntax);

}  // namespace fi::jinja
