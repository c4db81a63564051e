import sys

from bot.settings.generated import main

sys.exit(main())
