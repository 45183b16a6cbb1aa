"""The pages' words in English and Korean (``nfcpay ui --lang``). Amounts are formatted by
:func:`nfcpay.money.format_minor`, which already follows the currency; messages from the
server and the terminals (decline reasons, errors) are shown as they come, in English."""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("en", "ko")

#: key → (English, Korean)
LABELS: dict[str, tuple[str, str]] = {
    "owner_title": ("Grants", "결제 권한"),
    "counter_title": ("Counter", "계산대"),
    "wallet_title": ("Wallet", "지갑"),
    "sources": ("Funding sources", "결제 수단"),
    "no_sources": ("No funding source yet.", "등록된 결제 수단이 없습니다."),
    "available": ("available", "사용 가능"),
    "grants": ("Grants", "발급한 권한"),
    "no_grants": ("No grants yet.", "발급한 권한이 없습니다."),
    "for": ("for", "대상"),
    "left": ("left", "남음"),
    "of": ("of", "/"),
    "uses_left": ("uses left", "남은 횟수"),
    "expires": ("expires", "만료"),
    "no_expiry": ("no expiry", "만료 없음"),
    "per_use": ("per use at most", "1회 한도"),
    "purposes": ("purposes", "업종"),
    "regions": ("regions", "지역"),
    "merchants": ("merchants", "가맹점"),
    "status": ("status", "상태"),
    "revoke": ("Revoke", "취소"),
    "give_by_tap": ("Give by tap", "태그로 주기"),
    "amount": ("Amount", "금액"),
    "uses": ("Uses", "횟수"),
    "expires_in": ("Expires in", "유효 기간"),
    "purpose": ("Purpose (category)", "업종 코드"),
    "optional": ("optional", "선택"),
    "give": ("Wait for the tap", "태그 기다리기"),
    "waiting_tap": ("Waiting for the tap on the reader …", "리더기에 태그를 기다리는 중 …"),
    "confirm_question": (
        "Compare this fingerprint with the one on the target's screen. Confirm?",
        "상대 화면의 지문과 비교하세요. 확인합니까?",
    ),
    "tapped": ("tapped, key fingerprint", "태그함, 키 지문"),
    "confirm": ("Confirm", "확인"),
    "refuse": ("No, revoke it", "아니요, 취소"),
    "handed_over": ("Handed over", "전달됨"),
    "send_to_terminal": ("Send to terminal", "단말기로 보내기"),
    "target_id": ("Target terminal id", "받을 단말기 ID"),
    "existing_grant": ("Or a grant issued earlier", "또는 이미 발급한 권한"),
    "send": ("Send through the server", "서버로 보내기"),
    "send_sent": (
        "Sent; waiting on the server until it is received",
        "보냄, 받을 때까지 서버에서 대기 중",
    ),
    "send_delivered": ("Delivered", "전달됨"),
    "feed": ("Notifications", "알림"),
    "no_feed": ("Nothing yet.", "아직 없습니다."),
    "alarm": ("ALARM", "경고"),
    "charge": ("Charge", "결제 요청"),
    "ready": ("Ready", "준비됨"),
    "tap_now": ("Tap now", "지금 태그하세요"),
    "approved": ("APPROVED", "승인"),
    "declined": ("DECLINED", "거절"),
    "pending": ("PENDING", "보류"),
    "payments": ("Recent payments", "최근 결제"),
    "no_payments": ("No payments yet.", "결제 내역이 없습니다."),
    "refund": ("Refund", "환불"),
    "refund_all": ("all", "전액"),
    "held": ("Held grants", "보유한 권한"),
    "no_held": ("No grants held.", "보유한 권한이 없습니다."),
    "from": ("from", "발급"),
    "at": ("at", "가맹점"),
    "paid_by": ("paid by", "결제자"),
    "inbox": ("Sent to this terminal", "이 단말기로 온 권한"),
    "no_inbox": ("Nothing waiting on the server.", "서버에 기다리는 권한이 없습니다."),
    "receive": ("Receive", "받기"),
    "receive_all": ("Receive all", "모두 받기"),
    "received": ("Received", "받음"),
    "receipts": ("Receipts", "영수증"),
    "no_receipts": ("No receipts yet.", "영수증이 없습니다."),
    "refresh": ("Refresh from the server", "서버에서 새로 고침"),
    "offline": (
        "The payment server could not be reached: showing what this terminal last knew.",
        "결제 서버에 연결할 수 없어 마지막으로 알던 내용을 보여 줍니다.",
    ),
    "busy": ("A tap is already under way.", "이미 태그를 기다리는 중입니다."),
    "never": ("never", "없음"),
    "minutes": ("minutes", "분"),
    "hours": ("hours", "시간"),
    "day": ("1 day", "1일"),
}


def language(choice: str | None, environ: Mapping[str, str]) -> str:
    """``choice`` if given, else Korean when the locale (LANG / LC_ALL) is Korean."""
    if choice is not None:
        if choice not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, not {choice!r}")
        return choice
    locale = environ.get("LC_ALL") or environ.get("LANG") or ""
    return "ko" if locale.lower().startswith("ko") else "en"


def translator(lang: str) -> Mapping[str, str]:
    """The labels of ``lang``, by key."""
    index = LANGUAGES.index(lang)
    return {key: words[index] for key, words in LABELS.items()}
