"""Every word the bot says, in English and Simplified Chinese, in one place.

The consent notice lives here too (one text per language); its version is the hash of what it
says with the running configuration filled in, so changing the text, the input TTL, the age
limit or the operator makes everyone re-consent at their next photo.
"""

from __future__ import annotations

import hashlib

LANGUAGES = ("en", "zh")


def language_of(code: str | None) -> str:
    """Map a platform language code ("zh-hans", "zh-CN", "en-GB", ...) to "en" or "zh"."""
    return "zh" if code and code.lower().startswith("zh") else "en"


CONSENT_NOTICE = {
    "en": (
        "Hi! I'm Darkroom. I turn a selfie into a styled picture, right here on this server.\n\n"
        "Before you send a photo:\n"
        "• Your photo is styled on this server only. It is never saved to disk, never used for "
        "training, and it is deleted from memory {release}.\n"
        "{file}"
        "• I keep only a record that you agreed and your favourite style, under a pseudonym "
        "(not your name or account). Nothing else.\n"
        "• Withdraw at any time with /delete_my_data: it erases everything I hold about you.\n"
        "• You must be {min_age} or older.\n"
        "{operator}"
        "\nDo you agree?"
    ),
    "zh": (
        "你好！我是 Darkroom，在这台服务器上把你的自拍变成风格化的图片。\n\n"
        "发送照片之前请先了解：\n"
        "• 照片只在这台服务器上处理，从不写入磁盘，从不用于训练，{release}从内存中删除。\n"
        "{file}"
        "• 我只保存你同意过的记录和你喜欢的风格，并且使用化名（不是你的名字或账号），除此之外什么都不保存。\n"
        "• 随时发送 /delete_my_data 撤回同意：我会删除关于你的全部数据。\n"
        "• 你必须年满 {min_age} 岁。\n"
        "{operator}"
        "\n你同意吗？"
    ),
}

_RELEASE = {
    "en": {0: "as soon as your picture is sent back", "ttl": "{ttl} seconds after your picture is sent back (so you can try another style without sending it again)"},
    "zh": {0: "在图片发回给你后立即", "ttl": "在图片发回给你 {ttl} 秒后（方便你不重新发送就换一种风格）"},
}

# "Full quality (file)" keeps the styled picture (never the photo) in memory for a short while.
_FILE = {
    "en": "• The styled picture stays in memory for {ttl} seconds after it is sent, so you can take it as a file, then it is deleted too.\n",
    "zh": "• 风格化后的图片发出后会在内存中保留 {ttl} 秒，方便你以文件形式获取，之后同样删除。\n",
}

_OPERATOR = {
    "en": "• This bot is run by {operator}.\n",
    "zh": "• 本机器人的运营者：{operator}。\n",
}


def consent_notice(language: str, min_age: int, input_ttl: int, operator: str, question: bool = True, file_ttl: int = 0) -> str:
    """The notice as shown when asking; ``question=False`` leaves out the closing question
    (for /privacy, where nothing is being asked)."""
    release = _RELEASE[language][0] if input_ttl <= 0 else _RELEASE[language]["ttl"].format(ttl=input_ttl)
    operator_line = _OPERATOR[language].format(operator=operator) if operator else ""
    file_line = _FILE[language].format(ttl=file_ttl) if file_ttl > 0 else ""
    text = CONSENT_NOTICE[language].format(release=release, file=file_line, min_age=min_age, operator=operator_line)
    return text if question else text.rsplit("\n\n", 1)[0]


def notice_version(min_age: int, input_ttl: int, operator: str, file_ttl: int = 0) -> str:
    """The notice's version: a hash of every language's text as it is shown right now."""
    digest = hashlib.sha256()
    for language in LANGUAGES:
        digest.update(consent_notice(language, min_age, input_ttl, operator, file_ttl=file_ttl).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


TEXTS: dict[str, dict[str, str]] = {
    # consent
    "consent.agree": {"en": "I agree ({min_age}+)", "zh": "我同意（已满 {min_age} 岁）"},
    "consent.under_age": {"en": "I'm under {min_age}", "zh": "我未满 {min_age} 岁"},
    "consent.decline": {"en": "No thanks", "zh": "不了，谢谢"},
    "consent.thanks": {"en": "Thank you! You agreed. Send me a selfie any time.", "zh": "谢谢！你已同意。随时发自拍给我吧。"},
    "consent.thanks_with_photo": {"en": "Thank you! Now for your photo…", "zh": "谢谢！现在来处理你的照片……"},
    "consent.recorded": {"en": "✓ You agreed (notice version {version}).", "zh": "✓ 你已同意（告知版本 {version}）。"},
    "consent.declined": {
        "en": "No problem: I won't style your photos.",
        "zh": "没问题：我不会处理你的照片。",
    },
    "consent.under_age_refused": {
        "en": "Thanks for being honest. Darkroom is only for people aged {min_age} and over, so I won't style photos for you.",
        "zh": "谢谢你的诚实。Darkroom 只面向 {min_age} 岁及以上的用户，所以我不能为你处理照片。",
    },
    "consent.nothing_kept": {
        "en": "I kept nothing: any photo you sent has been dropped without being opened.",
        "zh": "我什么都没有保存：你发来的照片未被打开就已丢弃。",
    },
    "consent.needed_first": {
        "en": "Before I can style your photo, please read this and agree. Your photo waits (unopened) for up to 10 minutes.",
        "zh": "处理照片前请先阅读并同意以下内容。你的照片会（在未打开的状态下）最多等待 10 分钟。",
    },
    "consent.already": {"en": "You have already agreed. Send me a selfie!", "zh": "你已经同意过了。发自拍给我吧！"},
    "consent.changed": {
        "en": "This notice has changed since you were shown it, so that answer was not recorded. Please read the new one:",
        "zh": "这份说明在你看到之后已经更改，所以刚才的回答没有被记录。请阅读新的说明：",
    },
    "consent.withdrawn": {"en": "Consent withdrawn.", "zh": "已撤回同意。"},
    "consent.not_for_you": {"en": "This question is for someone else.", "zh": "这个问题不是问你的。"},
    # the command menu (handlers/commands.py): one line per command, shown by Telegram
    "command.start": {"en": "Start and read the consent notice", "zh": "开始并阅读同意说明"},
    "command.styles": {"en": "The styles and where each model comes from", "zh": "全部风格及模型来源"},
    "command.style": {"en": "Set your favourite style", "zh": "设置常用风格"},
    "command.style_from": {"en": "Use any picture as the style", "zh": "用任意图片作为风格"},
    "command.privacy": {"en": "What happens to your data", "zh": "你的数据会怎样处理"},
    "command.my_data": {"en": "A copy of everything held about you", "zh": "获取关于你的全部数据"},
    "command.delete_my_data": {"en": "Erase everything about you", "zh": "删除关于你的全部数据"},
    "command.revoke": {"en": "Withdraw your consent", "zh": "撤回同意"},
    "command.help": {"en": "How to use Darkroom", "zh": "使用帮助"},
    "command.darkroom_off": {"en": "Group admins: stop Darkroom in this group", "zh": "群管理员：在本群停用 Darkroom"},
    "command.darkroom_on": {"en": "Group admins: start Darkroom in this group again", "zh": "群管理员：在本群重新启用 Darkroom"},
    # help
    "help": {
        "en": (
            "Send me a selfie and pick a style: I style it on this server and send it back, then forget it.\n\n"
            "/styles – the styles, with where each model comes from\n"
            "/style NAME – set your favourite style (or /style to choose)\n"
            "/style_from – reply to any picture to use it as the style\n"
            "/privacy – what happens to your data, and what I hold right now\n"
            "/my_data – a copy of everything I hold about you\n"
            "/delete_my_data – erase everything about you\n"
            "/revoke – withdraw your consent\n\n"
            "Tip: add a style name as the caption, e.g. “ink”, or “oil 0.6 keep colours”."
        ),
        "zh": (
            "发一张自拍并选一种风格：我在这台服务器上处理后发回给你，然后忘掉它。\n\n"
            "/styles – 全部风格及每个模型的来源\n"
            "/style 名称 – 设置你喜欢的风格（或发送 /style 来选择）\n"
            "/style_from – 回复任意一张图片，用它作为风格\n"
            "/privacy – 你的数据会怎样处理，以及我现在保存了什么\n"
            "/my_data – 获取我保存的关于你的全部数据\n"
            "/delete_my_data – 删除关于你的全部数据\n"
            "/revoke – 撤回同意\n\n"
            "小提示：在照片说明里写上风格名，例如“水墨”，或“油画 0.6 保留颜色”。"
        ),
    },
    "help.group": {
        "en": "In groups I only act on commands: reply /style [NAME] to a photo, or send a photo with the caption /style [NAME]. The person in the photo must have agreed first.",
        "zh": "在群聊里我只响应命令：回复一张照片 /style [名称]，或发送说明为 /style [名称] 的照片。照片的主人需要先同意。",
    },
    "error.generic": {"en": "Sorry, something went wrong on my side. Please try again.", "zh": "抱歉，我这边出了问题，请重试。"},
    "unknown_command": {"en": "I don't know that command.", "zh": "我不认识这个命令。"},
    # styles
    "styles.header": {"en": "Styles (send /style NAME to make one your favourite):", "zh": "风格（发送 /style 名称 设为常用风格）："},
    "styles.faithful_header": {"en": "Faithful styles (made by Darkroom, no AI weights):", "zh": "写实风格（Darkroom 自己编写，不含 AI 权重）："},
    "styles.neural_header": {"en": "Neural styles:", "zh": "神经网络风格："},
    "styles.licence_line": {"en": "Models: {models}. Full list with checksums: /privacy.", "zh": "模型：{models}。完整列表及校验值见 /privacy。"},
    "styles.pick": {"en": "Pick a style for your photo:", "zh": "为你的照片选一种风格："},
    "styles.sheet": {
        "en": "Your photo in every style (previews, made here and kept nowhere). Tap a style, or type its number:",
        "zh": "你的照片在每种风格下的预览（在本机生成，不保存）。点一种风格，或输入它的编号：",
    },
    "styles.sheet_typed": {
        "en": "Your photo in every style (previews, made here and kept nowhere). Type a style's number or name:",
        "zh": "你的照片在每种风格下的预览（在本机生成，不保存）。输入风格的编号或名称：",
    },
    "styles.sheet_group": {
        "en": "The photo in every style (previews, made here and kept nowhere). The person who sent it can tap one:",
        "zh": "这张照片在每种风格下的预览（在本机生成，不保存）。照片的发送者可以点一种风格：",
    },
    "styles.pick_default": {"en": "Pick your favourite style:", "zh": "选择你常用的风格："},
    "styles.more": {"en": "More…", "zh": "更多……"},
    "styles.fewer": {"en": "« Back", "zh": "« 返回"},
    "styles.always_ask": {"en": "Ask me each time", "zh": "每次都问我"},
    "styles.default_set": {"en": "Your favourite style is now {style}. Send a selfie!", "zh": "你的常用风格已设为 {style}。发自拍吧！"},
    "styles.default_cleared": {"en": "OK, I'll ask for a style each time.", "zh": "好的，我每次都会问你要哪种风格。"},
    "styles.unknown": {"en": "I don't know the style “{name}”. Send /styles to see them all.", "zh": "没有叫“{name}”的风格。发送 /styles 查看全部风格。"},
    "styles.chosen": {"en": "Style: {style}", "zh": "风格：{style}"},
    "styles.nothing_waiting": {"en": "There's no photo waiting any more. Please send it again.", "zh": "没有等待中的照片了，请重新发送。"},
    "styles.type_choice": {"en": "Reply with a number or a name:", "zh": "回复数字或名称："},
    # photos
    "photo.queued": {"en": "Got it! You're number {position} in line.", "zh": "收到！你排在第 {position} 位。"},
    "photo.received": {"en": "Got it! Getting ready…", "zh": "收到！正在准备……"},
    "photo.styling": {"en": "Styling your photo ({style})…", "zh": "正在处理你的照片（{style}）……"},
    "photo.done": {"en": "Done ✓ Your original has been deleted.", "zh": "完成 ✓ 你的原图已删除。"},
    "photo.done_held": {"en": "Done ✓ Your original will be deleted in {ttl} seconds.", "zh": "完成 ✓ 你的原图将在 {ttl} 秒后删除。"},
    "photo.caption": {"en": "{style} · styled on this server; your original was deleted.", "zh": "{style} · 在本服务器上处理；你的原图已删除。"},
    "photo.caption_held": {
        "en": "{style} · styled on this server; your original will be deleted in {ttl} s.",
        "zh": "{style} · 在本服务器上处理；你的原图将在 {ttl} 秒后删除。",
    },
    "photo.another": {"en": "Another style", "zh": "换一种风格"},
    "photo.file": {"en": "Full quality (file)", "zh": "原图（文件）"},
    "photo.file_gone": {"en": "I no longer hold that picture: results stay in memory for {ttl} seconds only. Send the photo again, then tap \"Full quality (file)\" under the result.", "zh": "那张图片我已经不再保存了：结果只在内存中保留 {ttl} 秒。请重新发送照片，然后点结果下方的“原图（文件）”。"},
    "photo.album_limit": {"en": "I'll style the first {limit} photos of the album.", "zh": "我会处理相册里的前 {limit} 张照片。"},
    "photo.not_image": {"en": "That doesn't look like a photo. Please send a JPEG, PNG, WebP, GIF, HEIC or AVIF picture.", "zh": "这看起来不是照片。请发送 JPEG、PNG、WebP、GIF、HEIC 或 AVIF 图片。"},
    "photo.too_large": {"en": "That file is too large (limit {limit_mb} MB). Please send a smaller photo.", "zh": "文件太大了（上限 {limit_mb} MB），请发送小一些的照片。"},
    "photo.too_many_pixels": {"en": "That picture has too many pixels for me. Please send a normal photo.", "zh": "这张图片的像素太多了，请发送一张普通照片。"},
    "photo.corrupt": {"en": "I couldn't read that picture; it seems damaged. Could you send it again?", "zh": "我读不了这张图片，它似乎已损坏。可以重新发送吗？"},
    "photo.too_complex": {"en": "I couldn't read that picture: it is built in a way that takes far too long to open. Please send a normal photo.", "zh": "我读不了这张图片：它的编码方式需要极长的时间才能打开。请发送一张普通照片。"},
    "photo.too_small": {"en": "That picture is too small or too narrow to style. Please send a bigger photo.", "zh": "这张图片太小或太窄，无法处理。请发送大一些的照片。"},
    "photo.unsupported": {"en": "I can only read JPEG, PNG, WebP, GIF, HEIC and AVIF pictures. Please send it as a normal photo.", "zh": "我只能读取 JPEG、PNG、WebP、GIF、HEIC 和 AVIF 图片，请以普通照片的方式发送。"},
    "photo.fetch_failed": {"en": "I couldn't download your photo from the chat service. Please send it again.", "zh": "无法从聊天服务下载你的照片，请重新发送。"},
    "photo.failed": {"en": "Sorry, something went wrong on my side. Your photo was deleted; please try again.", "zh": "抱歉，我这边出了问题。你的照片已删除，请重试。"},
    "photo.busy": {"en": "I'm very busy right now. Please try again in a few minutes.", "zh": "我现在太忙了，请过几分钟再试。"},
    "photo.rate_limited": {"en": "You've sent a lot of photos. Please try again in {minutes} minutes.", "zh": "你发送的照片太多了，请 {minutes} 分钟后再试。"},
    "photo.too_many_pending": {"en": "You already have photos waiting. Please wait for them first.", "zh": "你已经有照片在等待处理，请先等它们完成。"},
    "flood.slow_down": {
        "en": "You're sending messages faster than I can answer, so I skipped some of them. Please slow down and wait for my replies.",
        "zh": "你发消息的速度比我回复的快，所以我跳过了其中一些。请慢一点，等我回复后再发。",
    },
    "photo.lost": {
        "en": "Sorry, Darkroom restarted while styling your photo, and it kept no copy of it. Please send it again.",
        "zh": "抱歉，Darkroom 在处理你的照片时重启了，而且没有保留任何副本。请重新发送。",
    },
    "photo.worker_lost": {
        "en": "Sorry, the styling machine stopped before your photo was done, and no copy of it was kept. Please send it again.",
        "zh": "抱歉，负责处理照片的机器在完成前停止了，没有保留任何副本。请重新发送。",
    },
    "photo.faces_confirm": {
        "en": "I can see {count} faces in this photo. Before I style it, please confirm that everyone in it agreed. (The rules on deep synthesis ask for this.)",
        "zh": "这张照片里我看到 {count} 张脸。处理之前，请确认照片中的每个人都同意。（深度合成相关规定要求这样做。）",
    },
    "photo.faces_yes": {"en": "Yes, everyone agreed", "zh": "是的，大家都同意"},
    "photo.faces_no": {"en": "No, don't style it", "zh": "不，不要处理"},
    "photo.faces_declined": {"en": "OK, I won't style it. The photo has been deleted.", "zh": "好的，我不会处理它。照片已删除。"},
    "photo.shutdown": {
        "en": "Sorry, Darkroom is restarting and could not style your photo. It kept no copy: please send it again in a minute.",
        "zh": "抱歉，Darkroom 正在重启，没能处理你的照片。照片没有保留任何副本，请一分钟后重新发送。",
    },
    "photo.cancelled": {"en": "Cancelled.", "zh": "已取消。"},
    "photo.unsupported_message": {"en": "I can only style photos. Send me a selfie!", "zh": "我只能处理照片。发一张自拍给我吧！"},
    "photo.style_picture_saved": {
        "en": "Got your style picture. Now send the photo to style with it (within 10 minutes).",
        "zh": "收到风格图片。现在请在 10 分钟内发送要处理的照片。",
    },
    "photo.style_from_usage": {
        "en": "Reply /style_from to a picture (or send a picture with the caption /style_from), then send your photo.",
        "zh": "用 /style_from 回复一张图片（或发送说明为 /style_from 的图片），然后发送你的照片。",
    },
    "photo.your_picture": {"en": "your picture", "zh": "你的图片"},
    "photo.forwarded": {
        "en": "This photo was forwarded from someone else, so I won't style it: only the person who first sent it can agree to that. Ask them to send it to me themselves. (A forwarded picture can still be a style: send it with the caption /style_from.)",
        "zh": "这张照片是从别人那里转发来的，所以我不会处理它：只有最初发送它的人才能同意处理。请让对方自己发给我。（转发的图片仍可用作风格：发送时加上说明 /style_from。）",
    },
    "photo.forwarded_group": {
        "en": "That photo was forwarded from someone else, so I won't style it: only the person who first sent it can agree to that.",
        "zh": "这张照片是从别人那里转发来的，所以我不会处理它：只有最初发送它的人才能同意处理。",
    },
    # privacy
    "delete.receipt": {
        "en": (
            "Deleted. Receipt:\n"
            "• consent records: {consents}\n"
            "• preferences: {preferences}\n"
            "• queued or running jobs cancelled: {jobs}\n"
            "• photos held in memory released: {held}\n"
            "• styled photos and previews of mine deleted from the chat: {replies}\n"
            "• your photo messages deleted from our chat: {selfies}\n"
            "• other records: {other}\n"
            "Nothing about you is left on this server."
        ),
        "zh": (
            "已删除。回执：\n"
            "• 同意记录：{consents}\n"
            "• 偏好设置：{preferences}\n"
            "• 已取消的排队或进行中的任务：{jobs}\n"
            "• 已释放的内存中照片：{held}\n"
            "• 已从聊天中删除的我发出的图片和预览：{replies}\n"
            "• 已从我们的聊天中删除的你发的照片：{selfies}\n"
            "• 其他记录：{other}\n"
            "这台服务器上已没有任何关于你的数据。"
        ),
    },
    "delete.done_group": {
        "en": "Done: everything Darkroom held about you is erased. (What was removed is not listed in a group; /privacy in a private chat with me shows that nothing is left.)",
        "zh": "完成：Darkroom 保存的关于你的全部数据已删除。（删除明细不会在群里列出；在与我的私聊中发送 /privacy 可以确认已无任何数据。）",
    },
    "delete.late_delivery": {
        "en": "One more thing: a styled photo of yours was already on its way when you erased your data. It arrived after the receipt, and I deleted it from the chat at once.",
        "zh": "补充一点：你删除数据时，一张处理好的照片已经在发送途中。它在回执之后才送达，我已立即把它从聊天中删除。",
    },
    "delete.late_delivery_kept": {
        "en": "One more thing: a styled photo of yours was already on its way when you erased your data, and it arrived after the receipt. This chat service does not let me delete messages, so please delete it yourself. Nothing about you is kept on this server.",
        "zh": "补充一点：你删除数据时，一张处理好的照片已经在发送途中，并在回执之后送达。这个聊天平台不允许我删除消息，请你自己删除它。这台服务器上没有保留任何关于你的数据。",
    },
    "privacy.private_only": {
        "en": "That shows your personal data, so I only answer it in a private chat. Open a chat with me and send /{command} there.",
        "zh": "这会显示你的个人数据，所以我只在私聊中回答。请打开与我的私聊，在那里发送 /{command}。",
    },
    "privacy.header": {"en": "Privacy — what Darkroom does with your data", "zh": "隐私 —— Darkroom 如何处理你的数据"},
    "privacy.now": {
        "en": "What I hold about you right now: consent {consent}; favourite style {style}; jobs waiting {jobs}; photos in memory {held}.",
        "zh": "我现在保存的关于你的数据：同意记录 {consent}；常用风格 {style}；等待中的任务 {jobs}；内存中的照片 {held}。",
    },
    "privacy.consent_yes": {"en": "given on {date} (version {version})", "zh": "已于 {date} 同意（版本 {version}）"},
    "privacy.none": {"en": "none", "zh": "无"},
    # groups
    "group.off": {"en": "Darkroom is now off in this group. An admin can turn it back on with /darkroom_on.", "zh": "Darkroom 已在本群关闭。管理员可发送 /darkroom_on 重新开启。"},
    "group.on": {"en": "Darkroom is now on in this group.", "zh": "Darkroom 已在本群开启。"},
    "group.admins_only": {"en": "Only group admins can do that.", "zh": "只有群管理员可以这样做。"},
    "group.reply_to_photo": {"en": "Reply /style [NAME] to a photo to style it.", "zh": "用 /style [名称] 回复一张照片来处理它。"},
    "group.author_consent": {
        "en": "The person who sent this photo needs to agree first. (Only their own answer counts.)",
        "zh": "需要照片的发送者先同意。（只有本人的回答有效。）",
    },
    "group.ask_author": {
        "en": "Style this photo? Say yes only if everyone in it agreed. Only the sender of the photo can answer.",
        "zh": "要处理这张照片吗？只有在照片中每个人都同意时才回答“可以”。只有照片的发送者可以回答。",
    },
    "group.author_yes": {"en": "Yes, everyone agreed", "zh": "可以，大家都同意"},
    "group.author_no": {"en": "No", "zh": "不行"},
    "group.only_author": {"en": "Only the person who sent the photo can answer.", "zh": "只有照片的发送者可以回答。"},
    "group.author_declined": {"en": "OK, the photo will not be styled.", "zh": "好的，这张照片不会被处理。"},
    "group.expired": {"en": "This request has expired.", "zh": "这个请求已过期。"},
    "group.previews": {"en": "Making previews of the photo in every style…", "zh": "正在生成这张照片在每种风格下的预览……"},
    "group.pick_not_yours": {
        "en": "Only the person who sent the photo can choose, within 10 minutes.",
        "zh": "只有照片的发送者可以选择，限 10 分钟内。",
    },
    # /privacy and /my_data (handlers/privacy.py)
    "privacy.software": {"en": "Software: Darkroom {version}.", "zh": "软件版本：Darkroom {version}。"},
    "privacy.operator": {"en": "Operator: {operator}.", "zh": "运营者：{operator}。"},
    "privacy.held_now": {"en": "released right after the reply", "zh": "回复后立即释放"},
    "privacy.held_for": {"en": "kept at most {ttl} seconds after the reply", "zh": "回复后最多保留 {ttl} 秒"},
    "privacy.how_long": {
        "en": "How long: photos live in memory only and are {held}; a photo reference waiting for consent or a style choice (not downloaded) at most {pending} minutes; your consent record and favourite style until you send /delete_my_data.",
        "zh": "保存期限：照片只在内存中，{held}；等待同意或选择风格的照片引用（未下载）最多 {pending} 分钟；同意记录和常用风格保存到你发送 /delete_my_data 为止。",
    },
    "privacy.models": {"en": "Models (all run on this server; none is downloaded at run time):", "zh": "模型（全部在本服务器上运行，运行时不下载任何模型）："},
    "privacy.own_filters": {"en": "• Faithful styles (pencil, comic, film): Darkroom's own code, no weights.", "zh": "• 写实风格（铅笔、漫画、胶片）：Darkroom 自己的代码，不含权重。"},
    "privacy.export_caption": {"en": "Everything Darkroom holds about you.", "zh": "Darkroom 保存的关于你的全部数据。"},
    # The on-device page (bot/web/page.py)
    "webapp.button": {"en": "Style it on my phone — the photo is never sent", "zh": "在我的手机上处理——照片不会被发送"},
    "webapp.menu": {"en": "On my phone", "zh": "在手机上处理"},
    "webapp.link": {
        "en": "Or style it on your phone (the photo is never sent): {url}",
        "zh": "也可以在你的手机上处理（照片不会被发送）：{url}",
    },
    "webapp.notice": {
        "en": "Two ways to use Darkroom: here in the chat, your photo is sent to this server, styled there and deleted (that is what you agree to below); or with \"Style it on my phone\", the photo is styled inside a page on your device and never sent. Only if you then press \"send to the chat\" is the styled picture (never the original) uploaded, to be delivered here and forgotten.",
        "zh": "使用 Darkroom 有两种方式：在聊天中，你的照片会发送到本服务器，处理后删除（这就是下面请你同意的内容）；或者点击“在我的手机上处理”，照片在你设备上的页面内处理，从不发送。只有当你随后点击“发送到聊天”时，才会上传风格化后的图片（绝不上传原照片），送达后即删除。",
    },
    "webapp.sent_caption": {
        "en": "AI-styled on your phone. You chose to send this styled picture here; your original photo never left your device.",
        "zh": "已在你的手机上完成 AI 风格化。你选择把这张风格化图片发到这里；原照片从未离开你的设备。",
    },
    # The on-device page's own words (bot/web/static/app.js gets them in styles.json)
    "page.promise": {"en": "Styled on this device — your photo is never sent.", "zh": "在这台设备上完成风格化——照片不会被发送。"},
    "page.pick": {"en": "Take or choose a photo", "zh": "拍摄或选择一张照片"},
    "page.change": {"en": "Another photo", "zh": "换一张照片"},
    "page.styles": {"en": "Tap a style", "zh": "点选一种风格"},
    "page.tilesHint": {
        "en": "Your photo in each style, made on this device. Tap one to style the whole photo.",
        "zh": "你的照片在每种风格下的样子，都在这台设备上生成。点一下即可处理整张照片。",
    },
    "page.strength": {"en": "Strength", "zh": "强度"},
    "page.keep": {"en": "Keep the photo's colours", "zh": "保留照片原有色彩"},
    "page.gentle": {"en": "Style faces more gently", "zh": "人脸处风格更柔和"},
    "page.loading": {"en": "Getting ready…", "zh": "准备中……"},
    "page.decode": {"en": "Read the photo", "zh": "读取照片"},
    "page.faces": {"en": "Find faces", "zh": "寻找人脸"},
    "page.network": {"en": "Style", "zh": "风格化"},
    "page.finish": {"en": "Finish", "zh": "完成"},
    "page.stepOf": {"en": "Step {n} of {total}: {step}", "zh": "第 {n} 步，共 {total} 步：{step}"},
    "page.estimate": {"en": "about {seconds} s, going by the last one", "zh": "按上一次估计约需 {seconds} 秒"},
    "page.cancel": {"en": "Cancel", "zh": "取消"},
    "page.cancelled": {
        "en": "Stopped. Your photo is still here: tap a style to try again.",
        "zh": "已停止。你的照片还在：点选一种风格即可重试。",
    },
    "page.compare": {"en": "Compare", "zh": "对比"},
    "page.compareHint": {"en": "Hold to see the original", "zh": "按住查看原图"},
    "page.original": {"en": "Original", "zh": "原图"},
    "page.evidence": {"en": "Your photo: 0 bytes sent.", "zh": "你的照片：已发送 0 字节。"},
    "page.evidenceSent": {
        "en": "Your photo: 0 bytes sent. The styled picture you chose to send: {kb} KB.",
        "zh": "你的照片：已发送 0 字节。你选择发送的风格化图片：{kb} KB。",
    },
    "page.faces1": {"en": "1 face found, styled more gently.", "zh": "找到 1 张人脸，人脸处风格更柔和。"},
    "page.facesN": {"en": "{n} faces found, styled more gently.", "zh": "找到 {n} 张人脸，人脸处风格更柔和。"},
    "page.faces0": {"en": "No face found.", "zh": "没有找到人脸。"},
    "page.facesOff": {"en": "Faces are styled like the rest of the photo.", "zh": "人脸与照片其他部分同样处理。"},
    "page.save": {"en": "Save", "zh": "保存"},
    "page.share": {"en": "Share", "zh": "分享"},
    "page.labelNote": {
        "en": "The saved picture says in its metadata that it is AI-styled. None of your photo's own metadata (place, camera, time) is in it.",
        "zh": "保存的图片在元数据中注明为 AI 风格化作品，不含原照片的任何元数据（地点、相机、时间）。",
    },
    "page.sendNote": {
        "en": "Optional: send the styled picture to this chat. This uploads only the styled result — never your original photo — and the server forgets it once it is delivered.",
        "zh": "可选：把风格化后的图片发送到本聊天。只会上传风格化结果，绝不上传原照片；送达后服务器即删除。",
    },
    "page.send": {"en": "Send to chat", "zh": "发送到聊天"},
    "page.sending": {"en": "Sending…", "zh": "正在发送……"},
    "page.sent": {"en": "Sent to the chat.", "zh": "已发送到聊天。"},
    "page.sendFailed": {"en": "It could not be sent. You can still save it.", "zh": "发送失败。你仍然可以保存图片。"},
    "page.sendConsent": {
        "en": "Not sent: agree in the chat first (/start), then send again.",
        "zh": "未发送：请先在聊天中同意（/start），然后再发送。",
    },
    "page.sendStale": {
        "en": "Not sent: this page was opened too long ago. Reopen this page from the chat, then send again.",
        "zh": "未发送：本页面打开太久了。请从聊天中重新打开本页面，然后再发送。",
    },
    "page.sendLimit": {
        "en": "Not sent: you have reached the limit for now. Please try again later; you can still save it.",
        "zh": "未发送：你暂时已达到上限。请稍后再试；你仍然可以保存图片。",
    },
    "page.unsupported": {
        "en": "This browser cannot run the styling on this device (it lacks WebAssembly SIMD). Nothing was sent anywhere. You can still use Darkroom by sending your photo to the bot in the chat; then it is styled on the server and forgotten.",
        "zh": "此浏览器无法在这台设备上完成风格化（不支持 WebAssembly SIMD）。没有任何内容被发送。你仍可以在聊天中把照片发给机器人，由服务器处理后立即删除。",
    },
    "page.error": {
        "en": "Something went wrong while styling. Nothing was sent anywhere. Please try another photo.",
        "zh": "风格化时出错了。没有任何内容被发送。请换一张照片试试。",
    },
    "page.too-small": {"en": "That picture is too small to style. Please try a larger one.", "zh": "这张图片太小了，请换一张更大的。"},
    "page.too-large": {
        "en": "That picture is over 50 megapixels, more than this page can safely hold. Please choose a smaller one.",
        "zh": "这张图片超过 5000 万像素，超出本页面能安全处理的范围。请换一张小一些的。",
    },
    "page.model-checksum": {
        "en": "The style model did not arrive intact, so it was not used. Please reload the page.",
        "zh": "风格模型传输不完整，因此未被使用。请重新加载页面。",
    },
    "page.decodeError": {
        "en": "That file could not be read as a picture. Please try a JPEG, PNG or WebP photo.",
        "zh": "无法读取这个文件。请使用 JPEG、PNG 或 WebP 照片。",
    },
    "page.aboutTitle": {"en": "What happens to my photo?", "zh": "我的照片会怎样？"},
    "page.about": {
        "en": "Your photo is read and styled inside this page, on this device. It is never uploaded: the page only downloads the style model and its own files from the server. Faces are found on this device too, to style them more gently.",
        "zh": "你的照片在本页面内、这台设备上读取并风格化，从不上传：页面只从服务器下载风格模型和自身文件。人脸检测也在这台设备上进行，以便人脸处风格更柔和。",
    },
    "page.licences": {"en": "Style licences: ", "zh": "风格许可："},
    "page.hashes": {
        "en": "What runs here, by SHA-256, so you can check it against your copy of Darkroom (it also works offline after this first visit):",
        "zh": "在这里运行的文件及其 SHA-256，可与你手中的 Darkroom 核对（首次访问后也可离线使用）：",
    },
}


def t(key: str, language: str, **values) -> str:
    """The text ``key`` in ``language`` (English when missing), with ``values`` filled in."""
    entry = TEXTS[key]
    return entry.get(language, entry["en"]).format(**values)


def page_texts() -> dict[str, dict[str, str]]:
    """The on-device page's texts, by language and then by the page's own short name."""
    page = {key.removeprefix("page."): entry for key, entry in TEXTS.items() if key.startswith("page.")}
    return {language: {name: entry.get(language, entry["en"]) for name, entry in page.items()} for language in ("en", "zh")}

