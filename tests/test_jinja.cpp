// The chat template interpreter: every reference rendering in ../shared/data/templates/cases.json
// byte for byte, then the language features one by one with expectations from Jinja2's semantics.
#include <gtest/gtest.h>

#include <cctype>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

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

// A copy of the fixtures may predate the templates.
bool have_cases() { return !test::shared_data().empty() && std::ifstream(cases_path()).good(); }

std::vector<ReferenceCase> reference_cases() {
  std::vector<ReferenceCase> cases;
  if (have_cases()) {
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
  if (!have_cases()) GTEST_SKIP() << cases_path() << " is not present; reference renderings skipped";
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

// ---- language features ----

std::string render(std::string_view source, const ordered_json& variables = ordered_json::object(), const jinja::Limits& limits = {},
                   const jinja::Syntax& syntax = {}) {
  jinja::RenderOptions options;
  options.now = reference_time;
  return jinja::Template(source, limits, syntax).render(variables, options);
}

// The message of the TemplateError that rendering throws, or a note that none was thrown.
std::string error_of(std::string_view source, const ordered_json& variables = ordered_json::object(), const jinja::Limits& limits = {}) {
  try {
    return "rendered without error: " + render(source, variables, limits);
  } catch (const TemplateError& error) {
    return error.what();
  }
}

struct FeatureCase {
  const char* name;
  const char* source;
  const char* variables;  // JSON
  const char* expected;
};

// Expected outputs follow Jinja2 with Hugging Face's settings (checked against Jinja2 3.1).
const FeatureCase kFeatureCases[] = {
    {"TrimBlocksDropsNewlineAfterTag", "{% if true %}\nyes\n{% endif %}\nend",
     "{}", "yes\nend"},
    {"LstripBlocksDropsIndentBeforeTag", "<ul>\n  {% for i in [1, 2] %}\n  <li>{{ i }}</li>\n  {% endfor %}\n</ul>",
     "{}", "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>"},
    {"LstripLeavesTextBeforeTagOnSameLine", "a  {% if true %}b{% endif %}",
     "{}", "a  b"},
    {"ExpressionsAreNotLstripped", "  {{ 'x' }}\n",
     "{}", "  x"},
    {"MinusStripsAllWhitespaceAround", "a  \n {%- if true -%} \n b \n {%- endif -%}\n\n c",
     "{}", "abc"},
    {"MinusOnExpressions", "a \n {{- 'b' -}} \n c",
     "{}", "abc"},
    {"PlusKeepsIndent", "  {%+ if true %}x{% endif %}",
     "{}", "  x"},
    {"CommentsAreTrimmedLikeBlocks", "a\n  {# note #}\nb\n{#- gone -#}   c",
     "{}", "a\nbc"},
    {"RawIsLiteral", "{% raw %}{{ x }}{% if %}{% endraw %}",
     "{}", "{{ x }}{% if %}"},
    {"OneTrailingNewlineDropped", "x\n\n",
     "{}", "x\n"},
    {"CarriageReturnsBecomeNewlines", "a\r\nb\rc",
     "{}", "a\nb\nc"},
    {"IntegerAndFloatPrinting", "{{ 1 }} {{ 1.0 }} {{ 10 / 4 }} {{ 10 / 5 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1e16 }} {{ 1e-05 }} {{ 0.1 + 0.2 }}",
     "{}", "1 1.0 2.5 2.0 3 -4 2 1024 1e+16 1e-05 0.30000000000000004"},
    {"NoneAndBooleansPrintLikePython", "{{ none }} {{ None }} {{ true }} {{ False }}",
     "{}", "None None True False"},
    {"ContainersPrintLikePython", "{{ [1, 'a', none, true] }} {{ (1,) }} {{ (1, 2) }} {{ {'k': \"it's\"} }}",
     "{}", "[1, 'a', None, True] (1,) (1, 2) {'k': \"it's\"}"},
    {"StringEscapes", "{{ 'a\\tb\\n' ~ \"q\\\"\" ~ '\\u00e9\\x41' ~ '\\\\' }}",
     "{}", "a\tb\nq\"éA\\"},
    {"AdjacentStringsConcatenate", "{{ 'a' 'b' \"c\" }}",
     "{}", "abc"},
    {"NumberForms", "{{ 1_000 }} {{ 0x1f }} {{ 0b101 }} {{ 0o17 }} {{ 2.5e2 }}",
     "{}", "1000 31 5 15 250.0"},
    {"Precedence", "{{ 2 + 3 * 4 }} {{ (2 + 3) * 4 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 1 ~ (2 + 3) }}",
     "{}", "14 20 4 64 5 15"},
    {"StringAndListOperators", "{{ 'ab' * 3 }} {{ 2 * 'x' }} {{ [1] + [2] }} {{ [0] * 3 }} {{ 'a' + 'b' }} {{ 'n' ~ 1 ~ none }}",
     "{}", "ababab xx [1, 2] [0, 0, 0] ab n1None"},
    {"Comparisons", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ (1, 2) == [1, 2] }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }}",
     "{}", "True False True True False True True"},
    {"Membership", "{{ 'ell' in 'hello' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 'x' in missing }}",
     "{}", "True True True True False"},
    {"LogicReturnsOperands", "{{ 0 or '' or 'last' }} {{ 'a' and 'b' }} {{ [] and 'no' }} {{ not 0 }}",
     "{}", "last b [] True"},
    {"Truthiness", "{% for v in ['', 'x', [], [0], {}, 0, 0.0, 1, none] %}{{ 'T' if v else 'F' }}{% endfor %}",
     "{}", "FTFTFFFTF"},
    {"InlineIf", "{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}]",
     "{}", "y n []"},
    {"SubscriptsAndSlices", "{{ 'hello'[1] }} {{ 'hello'[-1] }} {{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1, 2, 3, 4][::2] }} {{ [1, 2, 3][-2:] }} {{ 'héllo'[1:3] }}",
     "{}", "e o el olleh [1, 3] [2, 3] él"},
    {"UndefinedPrintsEmptyAndIsFalse", "[{{ missing }}] {{ missing is defined }} {{ missing is undefined }} {% if missing %}t{% else %}f{% endif %} {{ missing|length }} {{ missing|default('d') }}",
     "{}", "[] False True f 0 d"},
    {"MissingAttributeIsUndefined", "[{{ d.nope }}] {{ d.nope is defined }} {{ d['nope'] is defined }} {{ d.k }} {{ [1][5] is defined }}",
     "{\"d\": {\"k\": \"v\"}}", "[] False False v False"},
    {"AttributeOfNoneIsUndefined", "[{{ n.content }}]",
     "{\"n\": null}", "[]"},
    {"LoopOverUndefinedRunsElse", "{% for x in missing %}x{% else %}empty{% endfor %}",
     "{}", "empty"},
    {"DefaultWithBoolean", "{{ ''|default('e') }}|{{ ''|default('e', true) }}|{{ none|d('n', true) }}",
     "{}", "|e|n"},
    {"LoopVariables", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }} {% endfor %}",
     "{}", "1032TrueFalse3 2121FalseFalse3 3210FalseTrue3 "},
    {"LoopNeighbours", "{% for x in [1, 2, 3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}",
     "{}", "[|2][1|3][2|]"},
    {"LoopCycle", "{% for x in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}",
     "{}", "abab"},
    {"LoopFilterCountsOnlyKept", "{% for x in range(10) if x is odd %}{{ x }}/{{ loop.length }} {% endfor %}",
     "{}", "1/5 3/5 5/5 7/5 9/5 "},
    {"LoopElse", "{% for x in [] %}x{% else %}none{% endfor %}{% for x in [1] if false %}x{% else %}filtered{% endfor %}",
     "{}", "nonefiltered"},
    {"BreakAndContinue", "{% for x in range(10) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     "{}", "023"},
    {"ElseRunsUnlessAnIterationCompleted", "{% for x in [1] %}{% break %}{% else %}E{% endfor %}|{% for x in [1, 2] %}{% if x == 2 %}{% continue %}{% endif %}{% else %}E{% endfor %}|{% for x in [1] %}{% continue %}{% else %}E{% endfor %}",
     "{}", "E||E"},
    {"TupleUnpacking", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}",
     "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;37"},
    {"LoopOverDictGivesKeys", "{% for k in d %}{{ k }}{% endfor %}",
     "{\"d\": {\"x\": 1, \"y\": 2}}", "xy"},
    {"LoopOverStringGivesCharacters", "{% for c in 'hé!' %}[{{ c }}]{% endfor %}",
     "{}", "[h][é][!]"},
    {"NestedLoopsHaveTheirOwnLoop", "{% for a in [1, 2] %}{% for b in [1, 2] %}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}",
     "{}", "121;122;"},
    {"SetInLoopDoesNotLeak", "{% set x = 'outer' %}{% for i in [1] %}{% set x = 'inner' %}{{ x }} {% endfor %}{{ x }}",
     "{}", "inner outer"},
    {"SetInIfDoesLeak", "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}",
     "{}", "2"},
    {"NamespaceCarriesOutOfLoops", "{% set ns = namespace(count=0, seen=false) %}{% for i in range(3) %}{% set ns.count = ns.count + i %}{% endfor %}{{ ns.count }} {{ ns.seen }}",
     "{}", "3 False"},
    {"NamespaceWithoutArguments", "{% set ns = namespace() %}{% set ns.i = 5 %}{{ ns.i }}",
     "{}", "5"},
    {"SetTupleAndBlock", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}  {{ a }} text  {% endset %}[{{ c }}]{% set d | trim | upper %}  low  {% endset %}[{{ d }}]",
     "{}", "12[  1 text  ][LOW]"},
    {"ReassignPassedVariable", "{% set messages = messages[1:] %}{{ messages|length }}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}]}", "2"},
    {"WithScope", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]",
     "{}", "3[]"},
    {"MacroDefaultsAndKeywords", "{% macro tag(name, open='<', close='>') %}{{ open }}{{ name }}{{ close }}{% endmacro %}{{ tag('a') }}{{ tag('b', close=']') }}{{ tag(name='c', open='(') }}",
     "{}", "<a><b](c>"},
    {"MacroVarargsAndKwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}",
     "{}", "1(2, 3){'x': 4}"},
    {"MacroRecursion", "{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}",
     "{}", "3210"},
    {"MacroSeesTemplateVariables", "{% set greeting = 'hi' %}{% macro m() %}{{ greeting }} {{ who }}{% endmacro %}{{ m() }}",
     "{\"who\": \"you\"}", "hi you"},
    {"CallBlock", "{% macro box(title) %}[{{ title }}: {{ caller() }}]{% endmacro %}{% call box('t') %}body{% endcall %}",
     "{}", "[t: body]"},
    {"FilterBlock", "{% filter upper %}abc {{ 'def' }}{% endfilter %}",
     "{}", "ABC DEF"},
    {"GenerationBlockRendersItsBody", "{% generation %}answer{% endgeneration %}",
     "{}", "answer"},
    {"TojsonLikeJsonDumps", "{{ d|tojson }}|{{ 'é\"\\n'|tojson }}|{{ [1.0, none, true]|tojson }}",
     "{\"d\": {\"b\": [1, 2], \"a\": {\"x\": \"y\"}}}", "{\"b\": [1, 2], \"a\": {\"x\": \"y\"}}|\"é\\\"\\n\"|[1.0, null, true]"},
    {"TojsonIndent", "{{ d|tojson(indent=2) }}|{{ []|tojson(indent=2) }}",
     "{\"d\": {\"a\": [1], \"b\": {}}}", "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}|[]"},
    {"TojsonOptions", "{{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ 'é'|tojson(ensure_ascii=true) }}",
     "{\"d\": {\"b\": 1, \"a\": 2}}", "{\"a\": 2, \"b\": 1} {\"b\":1,\"a\":2} \"\\u00e9\""},
    {"StringFilters", "{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'hello world'|capitalize }}|{{ 'hello wORLD-x'|title }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ 'aXa'|replace('a', 'b') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'abc'|reverse }}|{{ 'one two  three'|wordcount }}",
     "{}", "x|hi|Hello world|Hello World-X|ABab|bXb|bba|cba|3"},
    {"LengthAndConversions", "{{ 'héllo'|length }} {{ [1, 2]|count }} {{ {'a': 1}|length }} {{ '42'|int + 1 }} {{ 'x'|int(7) }} {{ '2.5'|float }} {{ 3|float }} {{ 5|string ~ '!' }} {{ -3|abs }}",
     "{}", "5 2 1 43 7 2.5 3.0 5! 3"},
    {"Rounding", "{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 3.14159|round(3) }} {{ 3.1|round(0, 'ceil') }} {{ 3.9|round(0, 'floor') }} {{ 7|round }}",
     "{}", "2.0 4.0 2.67 3.142 4.0 3.0 7"},
    {"SequenceFilters", "{{ [3, 1, 2]|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'c']|sort }} {{ [1, 2, 1, 3]|unique|list }} {{ [1, 2, 3]|first }}{{ [1, 2, 3]|last }} {{ [1, 2, 3]|sum }} {{ [4, 9]|max }}{{ [4, 9]|min }} {{ 'ab'|list }} {{ [1, 2, 3, 4, 5]|batch(2)|list }}",
     "{}", "[1, 2, 3] [3, 2, 1] ['A', 'b', 'c'] [1, 2, 3] 13 6 94 ['a', 'b'] [[1, 2], [3, 4], [5]]"},
    {"JoinMapSelect", "{{ messages|map(attribute='role')|join(', ') }} {{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|first }} {{ messages|rejectattr('role', 'in', ['system', 'user'])|list|length }} {{ [1, 2, 3, 4]|select('even')|list }} {{ [0, 1, '']|reject|list }} {{ ['a', 'b']|map('upper')|join }}",
     "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}]}", "system, user, assistant Hi 1 [2, 4] [0, ''] AB"},
    {"FilterResultsAreGenerators", "{% if [1]|select('even') %}true even when empty{% endif %} {{ [1, 2]|map('string')|list }} {{ [3, 1]|reverse|list }}",
     "{}", "true even when empty ['1', '2'] [1, 3]"},
    {"DictFilters", "{{ d|dictsort }} {{ d|dictsort(by='value', reverse=true) }} {{ d|items|list }}",
     "{\"d\": {\"b\": 1, \"a\": 2}}", "[('a', 2), ('b', 1)] [('a', 2), ('b', 1)] [('b', 1), ('a', 2)]"},
    {"Indent", "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent('> ', blank=true) }}",
     "{}", "a\n  b\n\n  c|  a\n  b|a\n> \n> b"},
    {"SortByAttribute", "{{ people|sort(attribute='age')|map(attribute='name')|join(' ') }}",
     "{\"people\": [{\"name\": \"b\", \"age\": 30}, {\"name\": \"a\", \"age\": 20}]}", "a b"},
    {"TypeTests", "{{ 'x' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.5 is float }}{{ true is boolean }}{{ none is none }}{{ {} is mapping }}{{ [] is sequence }}{{ 'x' is iterable }}{{ 3 is iterable }}{{ range is callable }}",
     "{}", "TrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrue"},
    {"ValueTests", "{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 2 is eq 2 }}{{ 2 is equalto 3 }}{{ 2 is in [1, 2] }}{{ 3 is gt 2 }}{{ 'AB' is upper }}{{ 'ab' is lower }}",
     "{}", "TrueFalseTrueTrueFalseTrueTrueFalseTrueTrueTrueTrue"},
    {"NegatedTests", "{{ none is not none }} {{ x is not defined }} {{ not x is defined }}",
     "{}", "False True True"},
    {"StringMethods", "{{ ' a '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'a\\n\\n'.rstrip('\\n') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'hello'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.find('z') }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}|{{ 'a-b'.replace('-', '+') }}|{{ 'hello world'.title() }}|{{ ', '.join(['x', 'y']) }}|{{ '{}-{name}'.format(1, name='n') }}",
     "{}", "a|a|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|TrueTrue|23-1|HIhi|a+b|Hello World|x, y|1-n"},
    {"ThinkSplitAsQwen", "{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
     "{\"c\": \"<think>\\nreason\\n</think>\\n\\nanswer\"}", "answer|reason"},
    {"DictMethods", "{{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }} {{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }}",
     "{\"d\": {\"a\": 1, \"b\": 2}}", "['a', 'b'] [1, 2] [('a', 1), ('b', 2)] 1 dflt None"},
    {"ListMethods", "{{ [1, 2, 2].count(2) }} {{ ['a', 'b'].index('b') }}",
     "{}", "2 1"},
    {"Range", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(3, 0, -1)|list }} {{ range(0)|list }}",
     "{}", "[0, 1, 2] [1, 3, 5] [3, 2, 1] []"},
    {"DictGlobal", "{{ dict(a=1, b='x') }}",
     "{}", "{'a': 1, 'b': 'x'}"},
    {"StrftimeNow", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%B %d, %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A') }}",
     "{}", "26 Jul 2024|July 26, 2024|2024-07-26 00:00:00 Friday"},
};

class Feature : public ::testing::TestWithParam<FeatureCase> {};

TEST_P(Feature, RendersAsJinja2) {
  const FeatureCase& feature = GetParam();
  EXPECT_EQ(render(feature.source, ordered_json::parse(feature.variables)), feature.expected) << feature.source;
}

INSTANTIATE_TEST_SUITE_P(Jinja, Feature, ::testing::ValuesIn(kFeatureCases),
                         [](const ::testing::TestParamInfo<FeatureCase>& info) { return std::string(info.param.name); });

TEST(Jinja, WithoutTrimAndLstripBlocksWhitespaceStays) {
  EXPECT_EQ(render("{% if true %}\n  x\n  {% endif %}\nend", ordered_json::object(), {}, jinja::Syntax{false, false}), "\n  x\n  \nend");
  EXPECT_EQ(render("{% if true %}\n  x\n  {% endif %}\nend"), "  x\nend");
}

TEST(Jinja, TemplateParsesOnceAndRendersMany) {
  const jinja::Template compiled("{% for m in messages %}{{ m.content }};{% endfor %}");
  EXPECT_EQ(compiled.render({{"messages", {{{"content", "a"}}}}}), "a;");
  EXPECT_EQ(compiled.render({{"messages", {{{"content", "b"}}, {{"content", "c"}}}}}), "b;c;");
}

TEST(Jinja, StrftimeNowDefaultsToTheSystemClock) {
  const std::string year = jinja::Template("{{ strftime_now('%Y') }}").render(ordered_json::object());
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  EXPECT_EQ(year, std::to_string(local.tm_year + 1900));
}

// ---- errors ----

TEST(Jinja, RaiseExceptionCarriesExactlyTheMessage) {
  try {
    render("{% if messages|length == 0 %}{{ raise_exception('No messages: ' ~ 0) }}{% endif %}", {{"messages", ordered_json::array()}});
    FAIL() << "raise_exception did not throw";
  } catch (const TemplateRaisedError& error) {
    EXPECT_STREQ(error.what(), "No messages: 0");
  }
}

TEST(Jinja, SyntaxErrorsGiveLineAndColumn) {
  EXPECT_EQ(error_of("line one\n{% if true %}\n{{ 1 + }}\n{% endif %}"),
            "chat template syntax error at line 3, column 8: unexpected end of print statement");
  EXPECT_EQ(error_of("ok\n  {% frobnicate %}"), "chat template syntax error at line 2, column 6: unknown tag 'frobnicate'");
  EXPECT_EQ(error_of("{{ 'x' }}\n{% for m in messages %}\nno end"),
            "chat template syntax error at line 2, column 1: unexpected end of template: the 'for' block here was not closed "
            "('endfor' or 'else' expected)");
  EXPECT_EQ(error_of("{{ (1 }}"), "chat template syntax error at line 1, column 7: unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{{ 'open"), "chat template syntax error at line 1, column 4: unterminated string");
  EXPECT_EQ(error_of("{# open"), "chat template syntax error at line 1, column 1: missing end of comment tag");
  EXPECT_EQ(error_of("{% break %}"), "chat template syntax error at line 1, column 4: 'break' outside loop");
}

TEST(Jinja, RuntimeErrorsGiveLineAndColumn) {
  EXPECT_EQ(error_of("a\n  {{ x.y }}"), "chat template error at line 2, column 7: 'x' is undefined");
  EXPECT_EQ(error_of("{{ 1 / 0 }}"), "chat template error at line 1, column 6: division by zero");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"), "chat template error at line 1, column 8: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{{ d.x.y }}", {{"d", ordered_json::object()}}), "chat template error at line 1, column 7: 'dict object' has no attribute 'x'");
  EXPECT_EQ(error_of("{{ 'x'|nonesuch }}"), "chat template error at line 1, column 8: no filter named 'nonesuch'");
  EXPECT_EQ(error_of("{% for a, b in [[1, 2, 3]] %}{% endfor %}"), "chat template error at line 1, column 1: too many values to unpack (expected 2)");
  EXPECT_EQ(error_of("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
            "chat template error at line 1, column 35: macro 'm' takes not more than 1 argument(s)");
}

TEST(Jinja, OtherTemplatesAndFilesAreRefused) {
  for (const char* source : {"{% include 'x.jinja' %}", "{% import 'x.jinja' as x %}", "{% from 'x' import y %}", "{% extends 'base' %}"})
    EXPECT_NE(error_of(source).find("is not supported: a chat template may not load other templates"), std::string::npos) << source;
}

TEST(Jinja, SandboxRefusesMutation) {
  EXPECT_NE(error_of("{{ d.update({'a': 1}) }}", {{"d", ordered_json::object()}}).find("access to attribute 'update' of 'dict' object is unsafe."),
            std::string::npos);
  EXPECT_NE(error_of("{% set l = [] %}{{ l.append(1) }}").find("unsafe"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = ns %}").find("cannot hold a namespace"), std::string::npos);
  EXPECT_NE(error_of("{% set l = [1] %}{% set l.x = 1 %}").find("cannot assign attribute on non-namespace object"), std::string::npos);
}

// ---- limits ----

TEST(Jinja, OutputIsBounded) {
  jinja::Limits limits;
  limits.max_output_bytes = 1000;
  EXPECT_NE(error_of("{% for i in range(100) %}{{ 'x' * 50 }}{% endfor %}", ordered_json::object(), limits)
                .find("the rendered text is longer than the limit of 1000 bytes"),
            std::string::npos);
  EXPECT_EQ(render("{% for i in range(10) %}{{ 'x' * 50 }}{% endfor %}", ordered_json::object(), limits).size(), 500u);
}

TEST(Jinja, StringsAreBoundedBeforeTheyAreMade) {
  EXPECT_NE(error_of("{{ 'x' * 100000000000 }}").find("text longer than the limit of 1048576 bytes"), std::string::npos);
  EXPECT_NE(error_of("{% set s = 'x' * 1000000 %}{{ s ~ s }}").find("longer than the limit"), std::string::npos);
  EXPECT_NE(error_of("{{ ('x' * 1000)|replace('x', 'yyyyyyyyyy' * 200) }}").find("longer than the limit"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a'|indent(100000000000) }}").find("longer than the limit"), std::string::npos);
}

TEST(Jinja, RangeIsBounded) {
  EXPECT_NE(error_of("{{ range(1000000)|length }}").find("range() of 1000000 items is larger than the limit of 100000"), std::string::npos);
  EXPECT_EQ(render("{{ range(100000)|length }}"), "100000");
}

TEST(Jinja, LoopIterationsAreBounded) {
  jinja::Limits limits;
  limits.max_loop_iterations = 1000;
  EXPECT_NE(error_of("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", ordered_json::object(), limits)
                .find("loops ran more than 1000 iterations (limit)"),
            std::string::npos);
  // The default stops a quadratic loop (10^10 iterations) quickly.
  EXPECT_NE(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}").find("iterations (limit)"),
            std::string::npos);
}

TEST(Jinja, WorkIsBounded) {
  jinja::Limits limits;
  limits.max_steps = 10000;
  EXPECT_NE(error_of("{% for i in range(10000) %}{{ i + i + i }}{% endfor %}", ordered_json::object(), limits).find("evaluation steps (limit)"),
            std::string::npos);
  limits = {};
  limits.max_allocated_bytes = 1 << 20;
  EXPECT_NE(error_of("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", ordered_json::object(), limits)
                .find("bytes of values (limit)"),
            std::string::npos);
}

TEST(Jinja, RecursionIsBounded) {
  EXPECT_NE(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("macro calls nested more than 32 deep"), std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(200, '(') + "1" + std::string(200, ')') + " }}").find("nested more than 64 levels deep"),
            std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(200, '[') + std::string(200, ']') + " }}").find("nested more than 64 levels deep"), std::string::npos);
  std::string ifs;
  for (int i = 0; i < 100; ++i) ifs += "{% if true %}";
  EXPECT_NE(error_of(ifs).find("nested more than 64 levels deep"), std::string::npos);
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  EXPECT_NE(error_of(chain + " }}").find("expression nested too deeply"), std::string::npos);
  std::string filters = "{{ 'x'";
  for (int i = 0; i < 100000; ++i) filters += "|trim";
  EXPECT_NE(error_of(filters + " }}").find("expression nested too deeply"), std::string::npos);
}

TEST(Jinja, ValueNestingIsBounded) {
  EXPECT_NE(error_of("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}").find("nested deeper than 128"),
            std::string::npos);
  ordered_json deep = ordered_json::array();
  for (int i = 0; i < 1000; ++i) deep = ordered_json::array({deep});
  try {
    render("{{ deep }}", {{"deep", deep}});
    FAIL() << "deeply nested input accepted";
  } catch (const TemplateError& error) {
    EXPECT_NE(std::string(error.what()).find("JSON nested deeper than 128"), std::string::npos);
  }
}

TEST(Jinja, TemplateSizeIsBounded) {
  jinja::Limits limits;
  limits.max_template_bytes = 100;
  EXPECT_THROW(jinja::Template(std::string(101, 'x'), limits), TemplateError);
  EXPECT_NO_THROW(jinja::Template(std::string(100, 'x'), limits));
}

// ---- render_chat ----

TEST(Jinja, RenderChatPassesTheVariablesHuggingFacePasses) {
  const ordered_json messages = ordered_json::parse(R"([{"role": "user", "content": "Hi"}])");
  ChatRenderOptions options;
  options.bos_token = "<s>";
  options.eos_token = "</s>";
  const char* source = "{{ bos_token }}{{ messages[0].content }}{{ eos_token }} {{ add_generation_prompt }} {{ tools is none }} {{ documents is none }}";
  EXPECT_EQ(render_chat(source, messages, options), "<s>Hi</s> True True True");
  options.add_generation_prompt = false;
  options.extra_variables = ordered_json::parse(R"({"tools": [{"name": "f", "arguments": {"z": 1, "a": 2}}], "enable_thinking": false})");
  EXPECT_EQ(render_chat("{{ add_generation_prompt }} {{ tools|tojson }} {{ enable_thinking }}", messages, options),
            "False [{\"name\": \"f\", \"arguments\": {\"z\": 1, \"a\": 2}}] False");
  EXPECT_THROW(render_chat("x", ordered_json::object(), options), TemplateError);
}

}  // namespace
}  // namespace fi
