// The strategy registry: a name -> StrategyInfo table filled by CPB_REGISTER_STRATEGY.
#include <algorithm>
#include <map>

#include "strategies/strategy.hpp"

namespace cpb {
namespace {
std::map<std::string, StrategyInfo, std::less<>>& table() {
  static std::map<std::string, StrategyInfo, std::less<>> t;  // built on first use: init order safe
  return t;
}
}  // namespace

bool register_strategy(StrategyInfo info) {
  auto name = info.name;
  return table().emplace(std::move(name), std::move(info)).second;
}

const StrategyInfo* find_strategy(std::string_view name) {
  auto it = table().find(name);
  return it == table().end() ? nullptr : &it->second;
}

std::vector<const StrategyInfo*> all_strategies() {
  std::vector<const StrategyInfo*> v;
  for (const auto& [name, info] : table()) v.push_back(&info);
  return v;
}

std::vector<std::string> strategy_names() {
  std::vector<std::string> v;
  for (const auto& [name, info] : table()) v.push_back(name);
  return v;
}

}  // namespace cpb
