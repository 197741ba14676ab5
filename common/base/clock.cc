#include "common/base/clock.h"

namespace meshlet {

RealClock& RealClock::Get() {
  static RealClock* clock = new RealClock();
  return *clock;
}

}  // namespace meshlet
