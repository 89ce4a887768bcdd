#include "host/text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <new>
#include <optional>
#include <queue>
#include <set>
#include <utility>

#include "host/text/unicode.h"
#include "io/error.h"

namespace fi {

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// GPT-2's reversible byte <-> printable code point map: printable Latin-1 bytes map to
// themselves, the rest to U+0100 upwards in byte order.
struct ByteMap {
  std::string to_text[256];  // UTF-8 of each byte's code point
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMap() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const uint32_t codepoint = printable ? static_cast<uint32_t>(b) : next++;
      utf8_append(to_text[b], codepoint);
      to_byte[codepoint] = static_cast<uint8_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

// The BPE pre-tokenizers reproduced, as the published patterns. Llama 3's and Qwen2's
// "(?i:'s|'t|...)" is written with ASCII case pairs as llama.cpp does: a caseless 's' would also
// match U+017F. Patterns are matched with PCRE2 over UTF-8 with Unicode properties.
struct PreTokenizer {
  const char* name;
  const char* pattern;
  bool ignore_merges;  // a pre-token that is a vocabulary entry is emitted whole
  bool adds_bos;       // llama.cpp's default where tokenizer.ggml.add_bos_token is absent
};
constexpr PreTokenizer kPreTokenizers[] = {
    {"gpt-2", R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re", false, false},
    {"llama-bpe",
     R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
     true, true},
    {"qwen2",
     R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
     false, false},
};

// llama.cpp (like the Python and Rust regex engines the patterns come from) reads \s as Unicode's
// White_Space property; PCRE2's \s also takes U+180E. Spelled out, \s means the same everywhere.
constexpr const char* kWhiteSpace = R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// The patterns above have no nested classes, no literal brackets and no \S inside a class.
std::string with_white_space_spelled_out(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char escaped = pattern[++i];
      if (escaped == 's') out += in_class ? std::string(kWhiteSpace) : "[" + std::string(kWhiteSpace) + "]";
      else if (escaped == 'S') out += "[^" + std::string(kWhiteSpace) + "]";
      else out.append(pattern.substr(i - 1, 2));
      continue;
    }
    if (pattern[i] == '[') in_class = true;
    if (pattern[i] == ']') in_class = false;
    out += pattern[i];
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0) return strprintf("PCRE2 error %d", code);
  return reinterpret_cast<const char*>(buffer);
}

// Token texts llama.cpp treats as ending generation whatever the token's type (it makes them
// control tokens).
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
};

// Fill-in-the-middle tokens: from their key, or else found by text (which makes them control
// tokens). llama.cpp ends generation at the pad, repository and file-separator ones.
struct FillInTheMiddle {
  const char* key;
  const char* deprecated_key;
  bool ends_generation;
  std::vector<std::string_view> texts;
};
const std::vector<FillInTheMiddle>& fill_in_the_middle_tokens() {
  static const std::vector<FillInTheMiddle> kinds = {
      {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id", false,
       {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
        "<|prefix|>"}},
      {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id", false,
       {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>",
        "<|suffix|>"}},
      {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id", false,
       {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>",
        "<|middle|>"}},
      {"tokenizer.ggml.fim_pad_token_id", nullptr, true, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
      {"tokenizer.ggml.fim_rep_token_id", nullptr, true,
       {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
      {"tokenizer.ggml.fim_sep_token_id", nullptr, true, {"<|file_sep|>"}},
  };
  return kinds;
}

int32_t checked_id(const GgufFile& file, const char* key, int32_t vocab) {
  const auto value = file.get_uint(key);
  if (!value || *value == 0xFFFFFFFFu) return -1;
  if (*value >= static_cast<uint64_t>(vocab))
    fail("%s: %s = %llu is outside the vocabulary of %d tokens", file.path().c_str(), key,
         static_cast<unsigned long long>(*value), vocab);
  return static_cast<int32_t>(*value);
}

// llama.cpp cuts text into characters by the lead byte's high bits alone, valid UTF-8 or not
// (0xF8..0xFF count as 4-byte leads); cutting the same way keeps ids equal on invalid input.
size_t character_length(std::string_view text, size_t offset) {
  static constexpr uint8_t kLengthByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return std::min<size_t>(kLengthByHighNibble[static_cast<uint8_t>(text[offset]) >> 4], text.size() - offset);
}

// A piece of the text being merged: characters at first, neighbours in a linked list.
struct Symbol {
  int prev, next;
  size_t offset, length;
};

std::vector<Symbol> character_symbols(std::string_view text) {
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    const size_t length = character_length(text, offset);
    symbols.push_back({static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1, offset, length});
    offset += length;
  }
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

// Merges adjacent symbols while some pair has a priority, the lowest first and the leftmost on
// ties, as both SentencePiece (highest score) and BPE (lowest merge rank) do. priority(left,
// right) gives the pair's, or nothing when the pair does not merge. A queued pair is stale once
// either side has changed length.
template <typename Priority>
void merge_symbols(std::vector<Symbol>& symbols, Priority priority) {
  struct Pair {
    double priority;
    int left, right;
    size_t length;
  };
  auto later = [](const Pair& a, const Pair& b) {
    return a.priority > b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(later)> queue(later);
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    if (const std::optional<double> value = priority(symbols[left], symbols[right]))
      queue.push({*value, left, right, symbols[left].length + symbols[right].length});
  };
  for (size_t s = 1; s < symbols.size(); ++s) try_pair(static_cast<int>(s) - 1, static_cast<int>(s));
  while (!queue.empty()) {
    const Pair pair = queue.top();
    queue.pop();
    Symbol& left = symbols[pair.left];
    Symbol& right = symbols[pair.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != pair.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = pair.left;
    try_pair(left.prev, pair.left);
    try_pair(pair.left, left.next);
  }
}

// llama.cpp decodes BPE text to code points, each byte that does not begin a valid sequence
// becoming U+FFFD, and tokenizes the re-encoded text. PCRE2 needs valid UTF-8 too.
std::string valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (uint32_t codepoint : utf8_decode(text)) utf8_append(out, codepoint);
  return out;
}

}  // namespace

class Tokenizer::Splitter {
 public:
  explicit Splitter(const std::string& pattern) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                          &error, &error_offset, nullptr);
    if (!code_) fail("pre-tokenizer pattern does not compile at offset %zu: %s", error_offset, pcre2_message(error).c_str());
    // Without JIT support pcre2_match interprets the pattern: slower, same result.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Splitter() { pcre2_code_free(code_); }
  Splitter(const Splitter&) = delete;
  Splitter& operator=(const Splitter&) = delete;

  // Cuts valid UTF-8 into [begin, end) byte ranges: the pattern's successive matches, and any text
  // between them as pieces of their own (llama.cpp keeps it too).
  void split(std::string_view text, std::vector<std::pair<size_t, size_t>>& pieces) const {
    const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    if (!match) throw std::bad_alloc();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t offset = 0;
    while (offset < text.size()) {
      int found = pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
      // The JIT's fixed stack can run out on long runs; the interpreter keeps its state on the heap.
      if (found < 0 && found != PCRE2_ERROR_NOMATCH)
        found = pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, match.get(), nullptr);
      if (found == PCRE2_ERROR_NOMATCH) break;
      if (found < 0) fail("pre-tokenizer: matching text at byte %zu failed: %s", offset, pcre2_message(found).c_str());
      const PCRE2_SIZE* bounds = pcre2_get_ovector_pointer(match.get());
      if (bounds[1] <= bounds[0]) break;  // no pattern here matches empty text; stop rather than loop
      if (bounds[0] > offset) pieces.emplace_back(offset, bounds[0]);
      pieces.emplace_back(bounds[0], bounds[1]);
      offset = bounds[1];
    }
    if (offset < text.size()) pieces.emplace_back(offset, text.size());
  }

 private:
  pcre2_code* code_ = nullptr;
};

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());
  Tokenizer& t = *tokenizer;
  const char* path = file.path().c_str();
  const std::string model = file.get_string("tokenizer.ggml.model").value_or("");
  if (model == "llama") t.model_ = Model::Spm;
  else if (model == "gpt2") t.model_ = Model::Gpt2;
  else if (model.empty()) fail("%s: no tokenizer in the file (tokenizer.ggml.model is missing)", path);
  else fail("%s: unsupported tokenizer '%s' (supported: llama, gpt2)", path, model.c_str());

  const PreTokenizer* pre = nullptr;
  if (t.model_ == Model::Gpt2) {
    const auto name = file.get_string("tokenizer.ggml.pre");
    if (!name)
      fail("%s: tokenizer.ggml.pre is missing; llama.cpp then splits text its 'default' way, which flexinfer does "
           "not reproduce (supported pre-tokenizers: gpt-2, llama-bpe, qwen2)", path);
    for (const PreTokenizer& candidate : kPreTokenizers)
      if (*name == candidate.name) pre = &candidate;
    if (!pre) fail("%s: unsupported pre-tokenizer '%s' (supported: gpt-2, llama-bpe, qwen2)", path, name->c_str());
  }

  t.texts_ = file.get_string_array("tokenizer.ggml.tokens");
  if (t.texts_.empty() || t.texts_.size() > (1u << 22))
    fail("%s: tokenizer.ggml.tokens must hold 1..4194304 tokens", path);
  const auto vocab = static_cast<int32_t>(t.texts_.size());
  const std::vector<double> scores = file.get_float_array("tokenizer.ggml.scores");
  const std::vector<int64_t> kinds = file.get_int_array("tokenizer.ggml.token_type");
  if (!scores.empty() && scores.size() != t.texts_.size())
    fail("%s: %zu token scores for %d tokens", path, scores.size(), vocab);
  if (!kinds.empty() && kinds.size() != t.texts_.size())
    fail("%s: %zu token types for %d tokens", path, kinds.size(), vocab);
  t.scores_.assign(t.texts_.size(), 0.0f);
  t.kinds_.assign(t.texts_.size(), TokenKind::Normal);
  t.ids_.reserve(t.texts_.size());
  for (int32_t id = 0; id < vocab; ++id) {
    if (!scores.empty()) t.scores_[id] = static_cast<float>(scores[id]);
    if (!kinds.empty()) {
      if (kinds[id] < 1 || kinds[id] > 6)
        fail("%s: token %d has invalid type %lld", path, id, static_cast<long long>(kinds[id]));
      t.kinds_[id] = static_cast<TokenKind>(kinds[id]);
    }
    // As llama.cpp: an empty text would match everywhere, so it gets a name of its own.
    if (t.texts_[id].empty()) t.texts_[id] = strprintf("[EMPTY_%d]", id);
    const auto [existing, inserted] = t.ids_.emplace(t.texts_[id], id);
    if (!inserted) fail("%s: tokens %d and %d have the same text", path, existing->second, id);
  }

  t.bos_ = checked_id(file, "tokenizer.ggml.bos_token_id", vocab);
  t.eos_ = checked_id(file, "tokenizer.ggml.eos_token_id", vocab);
  t.unknown_ = checked_id(file, "tokenizer.ggml.unknown_token_id", vocab);
  t.add_bos_ = file.get_bool("tokenizer.ggml.add_bos_token").value_or(t.model_ == Model::Spm || pre->adds_bos);
  if (t.add_bos_ && t.bos_ < 0)
    fail("%s: the vocabulary adds a BOS token but tokenizer.ggml.bos_token_id is missing", path);
  t.add_space_prefix_ = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(t.model_ == Model::Spm);

  if (t.model_ == Model::Spm) {
    for (int b = 0; b < 256; ++b) t.byte_tokens_[b] = t.find(strprintf("<0x%02X>", b));
  } else {
    t.splitter_ = std::make_unique<Splitter>(with_white_space_spelled_out(pre->pattern));
    t.ignore_merges_ = pre->ignore_merges;
    const std::vector<std::string> merges = file.get_string_array("tokenizer.ggml.merges");
    if (merges.empty()) fail("%s: gpt2 tokenizer without tokenizer.ggml.merges", path);
    if (merges.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      fail("%s: %zu merges is more than a vocabulary can use", path, merges.size());
    t.merge_ranks_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      if (merges[rank].find(' ', 1) == std::string::npos)
        fail("%s: malformed merge %zu '%s'", path, rank, merges[rank].c_str());
      t.merge_ranks_.emplace(merges[rank], static_cast<int32_t>(rank));  // the first of duplicates ranks
    }
  }

  t.load_special_tokens(file);
  return tokenizer;
}

// End of generation and the token kinds llama.cpp derives from token texts, then the special
// tokens looked for in text: control, user-defined and unknown ones, longest first.
void Tokenizer::load_special_tokens(const GgufFile& file) {
  const auto vocab = size();
  std::set<int32_t> end_of_generation;

  for (const FillInTheMiddle& fim : fill_in_the_middle_tokens()) {
    int32_t id = checked_id(file, fim.key, vocab);
    if (fim.deprecated_key && file.find(fim.deprecated_key)) id = checked_id(file, fim.deprecated_key, vocab);
    if (id < 0) {
      for (int32_t candidate = 0; candidate < vocab && id < 0; ++candidate)
        if (std::find(fim.texts.begin(), fim.texts.end(), texts_[candidate]) != fim.texts.end()) id = candidate;
      if (id >= 0) kinds_[id] = TokenKind::Control;
    }
    if (id >= 0 && fim.ends_generation) end_of_generation.insert(id);
  }
  for (int32_t id = 0; id < vocab; ++id) {
    if (std::find(std::begin(kEndOfGenerationTexts), std::end(kEndOfGenerationTexts), texts_[id]) ==
        std::end(kEndOfGenerationTexts))
      continue;
    end_of_generation.insert(id);
    kinds_[id] = TokenKind::Control;
  }
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = checked_id(file, key, vocab);
    if (id >= 0) end_of_generation.insert(id);
  }

  // llama.cpp's exceptions: gpt-oss and Solar-Open continue after <|end|> (their turns end at
  // <|return|> or <|call|>), and Gemma 4 after </s>.
  auto eog_with_text = [&](std::string_view text) {
    for (int32_t id : end_of_generation)
      if (texts_[id] == text) return id;
    return -1;
  };
  const bool has_call = eog_with_text("<|call|>") >= 0 || eog_with_text("<|calls|>") >= 0;
  const int32_t end = eog_with_text("<|end|>");
  if (end >= 0 && has_call && (eog_with_text("<|return|>") >= 0 || eog_with_text("<|flush|>") >= 0)) {
    end_of_generation.erase(end);
    kinds_[end] = TokenKind::UserDefined;
  }
  const int32_t end_of_sequence = eog_with_text("</s>");
  if (end_of_sequence >= 0 && eog_with_text("<|tool_response>") >= 0) {
    end_of_generation.erase(end_of_sequence);
    kinds_[end_of_sequence] = TokenKind::Normal;
  }
  end_of_generation_.assign(end_of_generation.begin(), end_of_generation.end());

  for (int32_t id = 0; id < vocab; ++id) {
    const TokenKind kind = kinds_[id];
    if (kind == TokenKind::Control || kind == TokenKind::UserDefined || kind == TokenKind::Unknown)
      specials_.push_back(id);
  }
  std::stable_sort(specials_.begin(), specials_.end(),
                   [&](int32_t a, int32_t b) { return texts_[a].size() > texts_[b].size(); });
}

int32_t Tokenizer::find(std::string_view text) const {
  auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

bool Tokenizer::is_end_of_generation(int32_t token) const {
  return std::binary_search(end_of_generation_.begin(), end_of_generation_.end(), token);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  // As llama.cpp: each special token in turn, longest first, cuts the text that the ones before
  // it left into text and token fragments.
  struct Fragment {
    int32_t token;  // -1: the text [begin, end)
    size_t begin, end;
  };
  std::vector<Fragment> fragments, cut;
  if (!text.empty()) fragments.push_back({-1, 0, text.size()});
  for (int32_t id : specials_) {
    if (!parse_special && kinds_[id] != TokenKind::UserDefined) continue;
    const std::string& special = texts_[id];
    if (text.find(special) == std::string_view::npos) continue;
    cut.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        cut.push_back(fragment);
        continue;
      }
      const std::string_view region = text.substr(0, fragment.end);
      size_t begin = fragment.begin;
      for (size_t at; (at = region.find(special, begin)) != std::string_view::npos; begin = at + special.size()) {
        if (at > begin) cut.push_back({-1, begin, at});
        cut.push_back({id, 0, 0});
      }
      if (begin < fragment.end) cut.push_back({-1, begin, fragment.end});
    }
    fragments.swap(cut);
  }

  std::vector<int32_t> out;
  if (add_bos && add_bos_) out.push_back(bos_);
  // SentencePiece's space prefix goes before text at the start and after each special token.
  bool previous_was_special = true;
  for (const Fragment& fragment : fragments) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      previous_was_special = true;
      continue;
    }
    const std::string_view raw = text.substr(fragment.begin, fragment.end - fragment.begin);
    if (model_ == Model::Spm) {
      std::string escaped = add_space_prefix_ && previous_was_special ? std::string(kSpaceMarker) : std::string();
      for (char c : raw) {
        if (c == ' ') escaped += kSpaceMarker;
        else escaped += c;
      }
      encode_spm(escaped, out);
    } else {
      encode_bpe(raw, out);
    }
    previous_was_special = false;
  }
  return out;
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  // The adjacent pair whose merge is a token with the highest score merges first.
  std::vector<Symbol> symbols = character_symbols(text);
  if (symbols.empty()) return;
  merge_symbols(symbols, [&](const Symbol& left, const Symbol& right) -> std::optional<double> {
    const int32_t id = find(text.substr(left.offset, left.length + right.length));
    if (id < 0) return std::nullopt;
    return -static_cast<double>(scores_[id]);
  });

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

void Tokenizer::encode_bpe(std::string_view raw, std::vector<int32_t>& out) const {
  const std::string text = valid_utf8(raw);
  std::vector<std::pair<size_t, size_t>> pieces;
  splitter_->split(text, pieces);
  std::string word;
  for (const auto& [begin, end] : pieces) {
    word.clear();
    for (size_t i = begin; i < end; ++i) word += byte_map().to_text[static_cast<uint8_t>(text[i])];
    bpe_word(word, out);
  }
}

void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    const int32_t whole = find(word);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  // The adjacent pair with the lowest merge rank merges first.
  std::vector<Symbol> symbols = character_symbols(word);
  if (symbols.empty()) return;
  std::string key;
  merge_symbols(symbols, [&](const Symbol& left, const Symbol& right) -> std::optional<double> {
    key.assign(word.substr(left.offset, left.length));
    key += ' ';
    key.append(word.substr(right.offset, right.length));
    const auto it = merge_ranks_.find(key);
    if (it == merge_ranks_.end()) return std::nullopt;
    return it->second;
  });

  // A symbol that is no token falls back, as in llama.cpp, to its single bytes that are tokens.
  for (int s = 0; s >= 0; s = symbols[s].next) {
    const std::string_view part = word.substr(symbols[s].offset, symbols[s].length);
    const int32_t id = find(part);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (size_t i = 0; i < part.size(); ++i) {
      const int32_t single = find(part.substr(i, 1));
      if (single >= 0) out.push_back(single);
    }
  }
}

std::string Tokenizer::piece(int32_t token) const {
  if (token < 0 || token >= size()) return {};
  const std::string& text = texts_[token];
  switch (kinds_[token]) {
    case TokenKind::Control: case TokenKind::Unused: return {};
    case TokenKind::Byte:
      if (model_ == Model::Spm && text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(text[3])) && std::isxdigit(static_cast<unsigned char>(text[4])))
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
