// flexinfer serve in a build configured without the server (-DFLEXINFER_SERVER=OFF).
#include "io/error.h"
#include "tools/commands.h"

namespace fi {

int command_serve(int, char**) {
  fail("this build has no server: configure with -DFLEXINFER_SERVER=ON (needs libcpp-httplib-dev)");
}

}  // namespace fi
