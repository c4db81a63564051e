"""Telegram, through python-telegram-bot: the only package that imports `telegram`.

- `client.TelegramClient`: neutral replies → Bot API, photos into memory (the Platform port).
- `receive.TelegramReceiver`: updates → neutral events, the command menu; it sends nothing itself.
A worker, which only answers, builds just the client.
"""
