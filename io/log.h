#pragma once
// Diagnostics for every part of flexinfer: one logger (spdlog) writing one-line messages to
// stderr at the level the user chose (-v, --log-level), optionally also to a file (--log-file).
// Quiet by default: warnings, errors and the few lines that say where a run's weights live.
#include <optional>
#include <string>
#include <string_view>

namespace fi {

enum class LogLevel { Debug, Info, Warning, Error, Off };

void log_debug(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char* format, ...) __attribute__((format(printf, 1, 2)));
bool log_enabled(LogLevel level);

// The level and file for everything logged from now on; throws Error when the file cannot be
// opened for appending.
void configure_logging(LogLevel level, const std::string& file = "");
std::optional<LogLevel> parse_log_level(std::string_view name);  // debug, info, warning, error, off

// A failure the command ends with: on stderr whatever the level, and in the log file.
void report_error(const std::string& message);

// A progress line on a terminal, rewritten in place ("loading 45% ..."); nothing when stderr is
// not a terminal or info messages are hidden. end_progress clears it.
void log_progress(const std::string& text);
void end_progress();

}  // namespace fi
