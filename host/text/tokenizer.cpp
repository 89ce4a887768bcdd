#include "host/text/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <queue>

#include "host/text/unicode.h"
#include "io/error.h"

namespace fi {

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// GPT-2's reversible byte <-> printable code point map: printable Latin-1 bytes map to
// themselves, the rest to U+0100 upwards in byte order.
struct ByteMap {
  uint32_t to_codepoint[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMap() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_codepoint[b] = printable ? static_cast<uint32_t>(b) : next++;
      to_byte[to_codepoint[b]] = static_cast<uint8_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

int32_t checked_id(const GgufFile& file, const char* key, int32_t vocab) {
  const auto value = file.get_uint(key);
  if (!value || *value == 0xFFFFFFFFu) return -1;
  if (*value >= static_cast<uint64_t>(vocab))
    fail("%s: %s = %llu is outside the vocabulary of %d tokens", file.path().c_str(), key,
         static_cast<unsigned long long>(*value), vocab);
  return static_cast<int32_t>(*value);
}

struct Utf8Unit {
  size_t offset, length;
  uint32_t codepoint;  // U+FFFD for an invalid byte
};

std::vector<Utf8Unit> utf8_units(std::string_view text) {
  std::vector<Utf8Unit> units;
  for (size_t i = 0; i < text.size();) {
    const int length = utf8_sequence_length(static_cast<uint8_t>(text[i]));
    const auto decoded = utf8_decode(text.substr(i, static_cast<size_t>(length)));
    if (i + static_cast<size_t>(length) <= text.size() && decoded.size() == 1 && decoded[0] != 0xFFFD) {
      units.push_back({i, static_cast<size_t>(length), decoded[0]});
      i += static_cast<size_t>(length);
    } else {
      units.push_back({i, 1, 0xFFFD});
      ++i;
    }
  }
  return units;
}

// The GPT-2 pre-tokenizer:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as [begin, end) byte ranges of the text.
std::vector<std::pair<size_t, size_t>> gpt2_pretokenize(std::string_view text) {
  const std::vector<Utf8Unit> units = utf8_units(text);
  const size_t n = units.size();
  auto cp = [&](size_t i) { return i < n ? units[i].codepoint : 0xFFFFFFFFu; };
  auto letter = [&](size_t i) { return i < n && is_letter(cp(i)); };
  auto number = [&](size_t i) { return i < n && is_number(cp(i)); };
  auto space = [&](size_t i) { return i < n && is_whitespace(cp(i)); };
  auto other = [&](size_t i) { return i < n && !is_whitespace(cp(i)) && !is_letter(cp(i)) && !is_number(cp(i)); };

  std::vector<std::pair<size_t, size_t>> words;
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    if (cp(i) == '\'') {
      static const char* const kContractions[] = {"re", "ve", "ll", "s", "t", "m", "d"};
      for (const char* suffix : kContractions) {
        const size_t length = std::strlen(suffix);
        bool match = true;
        for (size_t k = 0; k < length; ++k) match &= cp(i + 1 + k) == static_cast<uint32_t>(suffix[k]);
        if (match) {
          end = i + 1 + length;
          break;
        }
      }
    }
    if (end == i) {
      const size_t start = cp(i) == ' ' ? i + 1 : i;
      if (letter(start)) {
        end = start;
        while (letter(end)) ++end;
      } else if (number(start)) {
        end = start;
        while (number(end)) ++end;
      } else if (other(start)) {
        end = start;
        while (other(end)) ++end;
      } else if (space(i)) {
        end = i;
        while (space(end)) ++end;
        // \s+(?!\S): leave the last space to prefix the following word.
        if (end < n && end - i > 1) --end;
      } else {
        end = i + 1;
      }
    }
    words.emplace_back(units[i].offset, end < n ? units[end].offset : text.size());
    i = end;
  }
  return words;
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  Tokenizer& t = *tokenizer;
  const std::string model = file.get_string("tokenizer.ggml.model").value_or("");
  if (model == "llama") t.model_ = Model::Spm;
  else if (model == "gpt2") t.model_ = Model::Gpt2;
  else if (model.empty()) fail("%s: no tokenizer in the file (tokenizer.ggml.model is missing)", file.path().c_str());
  else fail("%s: unsupported tokenizer '%s' (supported: llama, gpt2)", file.path().c_str(), model.c_str());

  t.texts_ = file.get_string_array("tokenizer.ggml.tokens");
  if (t.texts_.empty() || t.texts_.size() > (1u << 22))
    fail("%s: tokenizer.ggml.tokens must hold 1..4194304 tokens", file.path().c_str());
  const auto vocab = static_cast<int32_t>(t.texts_.size());
  const std::vector<double> scores = file.get_float_array("tokenizer.ggml.scores");
  const std::vector<int64_t> kinds = file.get_int_array("tokenizer.ggml.token_type");
  if (!scores.empty() && scores.size() != t.texts_.size())
    fail("%s: %zu token scores for %d tokens", file.path().c_str(), scores.size(), vocab);
  if (!kinds.empty() && kinds.size() != t.texts_.size())
    fail("%s: %zu token types for %d tokens", file.path().c_str(), kinds.size(), vocab);
  t.scores_.assign(t.texts_.size(), 0.0f);
  t.kinds_.assign(t.texts_.size(), TokenKind::Normal);
  for (int32_t id = 0; id < vocab; ++id) {
    if (!scores.empty()) t.scores_[id] = static_cast<float>(scores[id]);
    if (!kinds.empty()) {
      if (kinds[id] < 1 || kinds[id] > 6) fail("%s: token %d has invalid type %lld", file.path().c_str(), id,
                                               static_cast<long long>(kinds[id]));
      t.kinds_[id] = static_cast<TokenKind>(kinds[id]);
    }
    t.ids_[t.texts_[id]] = id;
  }

  t.bos_ = checked_id(file, "tokenizer.ggml.bos_token_id", vocab);
  t.eos_ = checked_id(file, "tokenizer.ggml.eos_token_id", vocab);
  t.eot_ = checked_id(file, "tokenizer.ggml.eot_token_id", vocab);
  t.unknown_ = checked_id(file, "tokenizer.ggml.unknown_token_id", vocab);
  t.add_bos_ = file.get_bool("tokenizer.ggml.add_bos_token").value_or(t.model_ == Model::Spm) && t.bos_ >= 0;
  t.add_space_prefix_ = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(t.model_ == Model::Spm);

  for (int b = 0; b < 256; ++b) {
    std::string text;
    if (t.model_ == Model::Spm) {
      text = strprintf("<0x%02X>", b);
    } else {
      utf8_append(text, byte_map().to_codepoint[b]);
    }
    t.byte_tokens_[b] = t.find(text);
  }

  if (t.model_ == Model::Gpt2) {
    const std::string pre = file.get_string("tokenizer.ggml.pre").value_or("gpt-2");
    if (pre != "gpt-2" && pre != "default")
      t.caveat_ = "pre-tokenizer '" + pre + "' is not implemented; using GPT-2's, so token ids may differ from llama.cpp";
    const std::vector<std::string> merges = file.get_string_array("tokenizer.ggml.merges");
    if (merges.empty()) fail("%s: gpt2 tokenizer without tokenizer.ggml.merges", file.path().c_str());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      if (merges[rank].find(' ', 1) == std::string::npos)
        fail("%s: malformed merge %zu '%s'", file.path().c_str(), rank, merges[rank].c_str());
      t.merge_ranks_.emplace(merges[rank], static_cast<int32_t>(rank));
    }
  }

  for (int32_t id = 0; id < vocab; ++id) {
    const TokenKind kind = t.kinds_[id];
    if ((kind == TokenKind::Control || kind == TokenKind::UserDefined || kind == TokenKind::Unknown) &&
        !t.texts_[id].empty())
      t.specials_.push_back(id);
  }
  std::stable_sort(t.specials_.begin(), t.specials_.end(),
                   [&](int32_t a, int32_t b) { return t.texts_[a].size() > t.texts_[b].size(); });
  return tokenizer;
}

int32_t Tokenizer::find(std::string_view text) const {
  auto it = ids_.find(std::string(text));
  return it == ids_.end() ? -1 : it->second;
}

bool Tokenizer::is_end_of_generation(int32_t token) const {
  return token == eos_ || token == eot_;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_ >= 0) out.push_back(bos_);

  // Split the text at special tokens: user-defined ones always, control ones only on request.
  bool previous_was_special = true;
  size_t raw_begin = 0, i = 0;
  auto flush_raw = [&](size_t end) {
    if (end <= raw_begin) return;
    const std::string_view raw = text.substr(raw_begin, end - raw_begin);
    if (model_ == Model::Spm) {
      std::string escaped = add_space_prefix_ && previous_was_special ? std::string(kSpaceMarker) : std::string();
      for (char c : raw) {
        if (c == ' ') escaped += kSpaceMarker;
        else escaped += c;
      }
      encode_spm(escaped, out);
    } else {
      encode_gpt2(raw, out);
    }
    previous_was_special = false;
  };
  while (i < text.size()) {
    int32_t matched = -1;
    for (int32_t id : specials_) {
      if (!parse_special && kinds_[id] != TokenKind::UserDefined) continue;
      const std::string& special = texts_[id];
      if (text.compare(i, special.size(), special) == 0) {
        matched = id;
        break;
      }
    }
    if (matched < 0) {
      ++i;
      continue;
    }
    flush_raw(i);
    out.push_back(matched);
    previous_was_special = true;
    i += texts_[matched].size();
    raw_begin = i;
  }
  flush_raw(text.size());
  return out;
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  // Symbols start as single UTF-8 characters in a linked list; the adjacent pair whose merge is a
  // token with the highest score merges first (leftmost on ties).
  struct Symbol {
    int prev, next;
    size_t offset, length;
  };
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    const size_t length = std::min<size_t>(utf8_sequence_length(static_cast<uint8_t>(text[offset])), text.size() - offset);
    symbols.push_back({static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1, offset, length});
    offset += length;
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Bigram {
    int left, right;
    float score;
    size_t length;
  };
  auto worse = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    const int32_t id = find(text.substr(symbols[left].offset, length));
    if (id < 0) return;
    queue.push({left, right, scores_[id], length});
  };
  for (size_t s = 1; s < symbols.size(); ++s) try_pair(static_cast<int>(s) - 1, static_cast<int>(s));

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != bigram.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_pair(left.prev, bigram.left);
    try_pair(bigram.left, left.next);
  }

  for (int s = 0; s >= 0; s = symbols[s].next) {
    const std::string_view piece = text.substr(symbols[s].offset, symbols[s].length);
    const int32_t id = find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : piece) {
      const int32_t byte_token = byte_tokens_[static_cast<uint8_t>(c)];
      if (byte_token >= 0) out.push_back(byte_token);
      else if (unknown_ >= 0) out.push_back(unknown_);
    }
  }
}

void Tokenizer::encode_gpt2(std::string_view text, std::vector<int32_t>& out) const {
  for (const auto& [begin, end] : gpt2_pretokenize(text)) {
    std::string word;
    for (size_t i = begin; i < end; ++i) utf8_append(word, byte_map().to_codepoint[static_cast<uint8_t>(text[i])]);
    bpe_word(word, out);
  }
}

void Tokenizer::bpe_word(const std::string& word, std::vector<int32_t>& out) const {
  std::vector<std::string> parts;
  for (size_t i = 0; i < word.size();) {
    const size_t length = static_cast<size_t>(utf8_sequence_length(static_cast<uint8_t>(word[i])));
    parts.push_back(word.substr(i, length));
    i += length;
  }
  // Merge the lowest-ranked adjacent pair (leftmost on ties) until no pair has a rank.
  for (;;) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = merge_ranks_.find(parts[i] + " " + parts[i + 1]);
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == std::numeric_limits<int32_t>::max()) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  for (const std::string& part : parts) {
    const int32_t id = find(part);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (size_t i = 0; i < part.size();) {
      const size_t length = static_cast<size_t>(utf8_sequence_length(static_cast<uint8_t>(part[i])));
      const int32_t single = find(part.substr(i, length));
      if (single >= 0) out.push_back(single);
      else if (unknown_ >= 0) out.push_back(unknown_);
      i += length;
    }
  }
}

std::string Tokenizer::piece(int32_t token) const {
  if (token < 0 || token >= size()) return {};
  const std::string& text = texts_[token];
  switch (kinds_[token]) {
    case TokenKind::Control: case TokenKind::Unused: return {};
    case TokenKind::Byte:
      if (model_ == Model::Spm && text.size() == 6 && text.compare(0, 3, "<0x") == 0)
        return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
      break;
    case TokenKind::UserDefined: return text;
    default: break;
  }
  if (model_ == Model::Spm) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 3, kSpaceMarker) == 0) {
        out += ' ';
        i += 3;
      } else {
        out += text[i++];
      }
    }
    return out;
  }
  std::string out;
  for (uint32_t codepoint : utf8_decode(text)) {
    auto it = byte_map().to_byte.find(codepoint);
    if (it != byte_map().to_byte.end()) out += static_cast<char>(it->second);
    else utf8_append(out, codepoint);
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& tokens) const {
  std::string out;
  bool first = true;
  for (int32_t token : tokens) {
    std::string text = piece(token);
    if (text.empty()) continue;
    if (first && strips_leading_space() && text[0] == ' ') text.erase(0, 1);
    first = false;
    out += text;
  }
  return out;
}

}  // namespace fi
