"""Built-in notification channels: email, SMS, DingTalk, WeCom and the in-system inbox."""
