"""Small Airflow hooks around the official SendGrid and Twilio SDKs.

Airflow's SendGrid provider is only an email backend and there is no Twilio provider, so
these follow the Slack provider's shape: credentials and API base URL from a connection, a
cached client, the SDK imported inside, any non-2xx raised as a ProviderError.
"""

from nurture.providers.sendgrid_hook import EmailMessage, SendGridHook
from nurture.providers.twilio_hook import SmsMessage, TwilioHook

__all__ = ["EmailMessage", "SendGridHook", "SmsMessage", "TwilioHook"]
