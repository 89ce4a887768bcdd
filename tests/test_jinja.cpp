// The chat template interpreter: every reference rendering in ../shared/data/templates/cases.json
// byte for byte, then the language features one by one with expectations from Jinja2's semantics.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "host/text/jinja.h"
#include "test_support.h"

namespace fi {
namespace {

using nlohmann::ordered_json;

// Hugging Face's reference renderings were made at this moment.
std::tm reference_time() {
  std::tm time{};
  time.tm_year = 2024 - 1900;
  time.tm_mon = 6;
  time.tm_mday = 26;
  time.tm_wday = 5;
  time.tm_yday = 207;
  return time;
}

// ---- the reference cases ----

struct ReferenceCase {
  std::string name;
  size_t index = 0;
};

std::string cases_path() { return test::shared_data() + "/templates/cases.json"; }

std::vector<ReferenceCase> reference_cases() {
  std::vector<ReferenceCase> cases;
  if (!test::shared_data().empty()) {
    const ordered_json all = ordered_json::parse(test::read_bytes_as_text(cases_path()));
    for (size_t i = 0; i < all.size(); ++i) {
      std::string name = all[i]["template"].get<std::string>() + "_" + all[i]["conversation"].get<std::string>();
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      cases.push_back({name, i});
    }
  }
  // Without the fixtures one placeholder case runs and skips, saying why.
  if (cases.empty()) cases.push_back({"fixtures_absent", 0});
  return cases;
}

class ReferenceRendering : public ::testing::TestWithParam<ReferenceCase> {};

TEST_P(ReferenceRendering, MatchesHuggingFace) {
  FI_REQUIRE_SHARED_DATA();
  const ordered_json all = ordered_json::parse(test::read_bytes_as_text(cases_path()));
  const ordered_json& reference = all.at(GetParam().index);
  const std::string source =
      test::read_bytes_as_text(test::shared_data() + "/templates/" + reference["template"].get<std::string>() + ".jinja");
  ChatRenderOptions options;
  options.add_generation_prompt = reference["add_generation_prompt"].get<bool>();
  options.bos_token = reference["bos_token"].get<std::string>();
  options.eos_token = reference["eos_token"].get<std::string>();
  options.now = reference_time;
  if (reference.contains("error")) {
    try {
      render_chat(source, reference["messages"], options);
      FAIL() << "expected the template to raise: " << reference["error"];
    } catch (const TemplateRaisedError& error) {
      EXPECT_EQ(error.what(), reference["error"].get<std::string>());
    }
  } else {
    EXPECT_EQ(render_chat(source, reference["messages"], options), reference["expected"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ReferenceRendering, ::testing::ValuesIn(reference_cases()),
                         [](const ::testing::TestParamInfo<ReferenceCase>& info) { return info.param.name; });

}  // namespace
}  // namespace fi
