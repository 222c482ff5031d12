#!/usr/bin/env python3
"""Generates rules/stripe-routes.toml from tests/data/stripe-nonget.tsv (every non-GET route of the
`stripe` npm package 23.1.0, API 2026-10-28): one base entry (no `when`) per route, with its bucket
and a one-line reason, for every route that the hand-written rules/stripe.toml does not already
name with a base entry. Stripe writes that match no rule are held (closed world), so every listed
route is classified here on purpose.

    python3 scripts/gen-stripe-routes.py > rules/stripe-routes.toml
    python3 scripts/gen-stripe-routes.py --check   # committed file up to date, every route covered

Classification: ROUTES (per route) overrides PATTERNS (first match wins); a route neither names is
an error, so a new route in the TSV needs a decision. Buckets (escalate = held for a human):
  escalate  money movement (class money); destruction, privilege and access, credentials, data
            sent somewhere new, weakened protections (class irreversible)
  notify    reversible but visible (class visible)
  allow     reads done with POST, cheap reversible writes, test-mode helpers (class reversible)
Routes only sometimes dangerous get a notify base here plus conditional escalate rules in
rules/stripe.toml; a base entry takes its path spelling from those rules, so the two share one
template (tests/rules_every_rule.rs pairs rules by their path text).
"""
import argparse
import fnmatch
import glob
import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TSV = "tests/data/stripe-nonget.tsv"
HAND = "rules/stripe.toml"
OUT = "rules/stripe-routes.toml"
BUCKETS = ("allow", "notify", "escalate", "block")
# The class a bucket's entries carry (block: none expected).
CLASSES = {"allow": {"reversible"}, "notify": {"visible"}, "escalate": {"money", "irreversible"},
           "block": {"money", "irreversible"}}

TEST_MODE = ("Test-mode helper: Stripe refuses it with a live key, so it cannot move live money "
             "or touch live data")
# (glob over "METHOD /path" as written in the TSV, bucket, class, reason; {noun} is the object).
PATTERNS = [
    ("DELETE *", "escalate", "irreversible", "Deletes {noun} (destruction; every Stripe DELETE is held)"),
    ("POST /v1/test_helpers/*", "allow", "reversible", TEST_MODE),
    ("POST /v2/*test_helpers/*", "allow", "reversible", TEST_MODE),
]

# Per route: METHOD PATH BUCKET CLASS REASON. Paths as in the TSV.
ROUTES_TEXT = r"""
POST /oauth/token escalate irreversible Exchanges an OAuth code or refresh token for a connected account's API credentials
POST /v1/account_links escalate irreversible Creates a link that lets whoever opens it onboard or edit a connected account, bank details included
POST /v1/account_sessions escalate irreversible Grants a client secret for embedded Connect components (payouts, balances, account management)
POST /v1/accounts/{accountId}/capabilities/{id} escalate irreversible Requests or removes a connected account capability (what it may do with money)
DELETE /v1/accounts/{accountId}/external_accounts/{id} escalate irreversible Deletes a connected account's bank account or card (where payouts go)
POST /v1/accounts/{accountId}/external_accounts/{id} escalate irreversible Changes a connected account's bank account or card, e.g. makes it the default payout destination
DELETE /v1/accounts/{accountId}/persons/{id} escalate irreversible Deletes a person (owner, representative) of a connected account
POST /v1/accounts/{accountId}/persons/{id} escalate irreversible Changes a person (owner, representative) of a connected account: identity and control
DELETE /v1/accounts/{id} escalate irreversible Deletes a connected account
POST /v1/accounts/{id} escalate irreversible Updates a connected account: bank account, payout settings, capabilities, identity
POST /v1/accounts/{id}/external_accounts escalate irreversible Adds a bank account or card where a connected account's payouts can go
POST /v1/accounts/{id}/login_links escalate irreversible Creates a login link to an Express account's dashboard
POST /v1/accounts/{id}/persons escalate irreversible Adds a person (owner, representative) to a connected account
POST /v1/accounts/{id}/unreject escalate irreversible Reinstates a rejected connected account so it can take payments and payouts again
POST /v1/apple_pay/domains notify visible Registers a domain for Apple Pay
POST /v1/application_fees/{feeId}/refunds/{id} notify visible Updates an application fee refund's metadata
POST /v1/apps/installs escalate irreversible Installs a Stripe app with the permissions it requests on this account
POST /v1/apps/installs/{id} escalate irreversible Changes an app install (version, pending permissions)
POST /v1/apps/installs/{id}/uninstall escalate irreversible Uninstalls an app (its settings and secrets go)
POST /v1/apps/secrets escalate irreversible Sets or overwrites an app secret (a credential)
POST /v1/apps/secrets/delete escalate irreversible Deletes an app secret (a credential)
POST /v1/balance_settings escalate money Changes balance settings: payout schedule and minimum balance, when and how money is paid out
POST /v1/billing/alerts notify visible Creates a billing (usage) alert
POST /v1/billing/alerts/{id}/activate allow reversible Re-activates a billing alert (more monitoring, not less)
POST /v1/billing/alerts/{id}/archive notify visible Archives a billing alert for good (monitoring removed)
POST /v1/billing/alerts/{id}/deactivate notify visible Deactivates a billing alert (monitoring paused)
POST /v1/billing/credit_grants escalate money Grants a customer billing credit (money off future invoices)
POST /v1/billing/credit_grants/{id} notify visible Updates a credit grant's metadata (a new expiry is held by a conditional rule)
POST /v1/billing/credit_grants/{id}/expire escalate irreversible Expires a customer's credit grant now (the customer loses the credit)
POST /v1/billing/credit_grants/{id}/void escalate irreversible Voids a customer's credit grant (the customer loses the credit)
POST /v1/billing/feedback_options notify visible Creates a cancellation feedback option for the customer portal
POST /v1/billing/feedback_options/{id} notify visible Updates a cancellation feedback option
POST /v1/billing/feedback_options/{id}/deactivate notify visible Deactivates a cancellation feedback option
POST /v1/billing/meter_event_adjustments escalate money Cancels a reported usage event (lowers a customer's bill, like a credit note)
POST /v1/billing/meter_events escalate money Reports usage billed on the customer's next invoice (no limit on the amount billed)
POST /v1/billing/meters notify visible Creates a usage meter
POST /v1/billing/meters/{id} notify visible Renames a usage meter
POST /v1/billing/meters/{id}/deactivate escalate money Deactivates a usage meter: every customer's usage stops being accepted and billed while it is off (lost, not recorded later)
POST /v1/billing/meters/{id}/reactivate notify visible Reactivates a usage meter
POST /v1/billing_portal/configurations notify visible Creates a customer portal configuration (what customers may change themselves)
POST /v1/billing_portal/configurations/{id} notify visible Changes what customers may do in the customer portal
POST /v1/billing_portal/sessions escalate irreversible Creates a URL opening a customer's billing portal (payment methods, subscriptions, invoices) to whoever holds it
POST /v1/charges/{id} notify visible Updates a charge's description, metadata or shipping (fraud reports and receipt e-mails are held by conditional rules)
POST /v1/checkout/sessions/{id} notify visible Updates an open checkout session (the customer still decides to pay)
POST /v1/checkout/sessions/{id}/expire notify visible Expires a checkout session: the customer can no longer pay with it (no money moves)
POST /v1/climate/orders escalate money Buys carbon removal, paid from the Stripe balance
POST /v1/climate/orders/{id} notify visible Updates a climate order's beneficiary or metadata
POST /v1/climate/orders/{id}/cancel escalate money Cancels a climate order (refunded minus fees)
POST /v1/coupons escalate money Creates a coupon (a discount any code that applies coupons by id can use; `forever` stays on subscriptions after the coupon is deleted)
DELETE /v1/coupons/{id} escalate irreversible Deletes a coupon
POST /v1/coupons/{id} notify visible Renames a coupon or changes its metadata (its discount is immutable)
POST /v1/credit_notes/{id} notify visible Updates a credit note's memo or metadata
POST /v1/credit_notes/{id}/void escalate irreversible Voids a credit note (the credit given is taken back)
POST /v1/customer_sessions escalate irreversible Grants a client secret to a customer's saved payment methods and embedded components
POST /v1/customers notify visible Creates a customer (a starting balance, a legacy plan subscription or discount, is held by conditional rules)
POST /v1/customers/{customerId}/balance_transactions/{id} notify visible Updates a customer balance transaction's description or metadata
DELETE /v1/customers/{customerId}/sources/{id} escalate irreversible Deletes a customer's saved card or bank account
POST /v1/customers/{customerId}/sources/{id} notify visible Updates a saved card or bank account's details (owner, expiry, address)
POST /v1/customers/{customerId}/sources/{id}/verify notify visible Verifies a customer's bank account with microdeposit amounts
DELETE /v1/customers/{customerId}/tax_ids/{id} escalate irreversible Deletes a customer tax ID
POST /v1/customers/{id} notify visible Updates a customer (a balance change, a legacy plan subscription or discount, is held by conditional rules)
POST /v1/customers/{id}/balance_transactions escalate money Credits or debits a customer's balance (applied to their next invoices)
POST /v1/customers/{id}/cash_balance notify visible Changes how a customer's cash balance is reconciled against invoices
DELETE /v1/customers/{id}/discount escalate irreversible Removes a customer's discount (they pay more)
POST /v1/customers/{id}/funding_instructions notify visible Creates bank transfer instructions for a customer to send money in
POST /v1/customers/{id}/sources notify visible Attaches a card or bank account to a customer (charging it is gated separately)
POST /v1/customers/{id}/tax_ids escalate money Adds a customer tax ID (an EU VAT ID makes automatic tax reverse-charge their invoices)
POST /v1/disputes/{id} notify visible Stages dispute evidence (submitting it, the default, is held by conditional rules)
POST /v1/entitlements/features notify visible Creates an entitlement feature
POST /v1/entitlements/features/{id} notify visible Updates or archives an entitlement feature (what customers get access to)
POST /v1/ephemeral_keys escalate irreversible Mints an ephemeral key: a client credential for a customer, issuing card or session
DELETE /v1/ephemeral_keys/{id} escalate irreversible Revokes an ephemeral key (a credential)
POST /v1/file_links escalate irreversible Publishes a file (identity documents, dispute evidence) at a public URL
POST /v1/file_links/{id} notify visible Updates a file link's metadata (a new expiry is held by a conditional rule)
POST /v1/files notify visible Uploads a file; not private if file_link_data[create]=true publishes it (held by a conditional rule), and uploads are multipart, which Airlock cannot read and holds
POST /v1/financial_connections/accounts/{id}/disconnect escalate irreversible Disconnects a linked bank account for good (the customer must link it again)
POST /v1/financial_connections/accounts/{id}/refresh allow reversible Refreshes a linked bank account's balance or ownership data
POST /v1/financial_connections/accounts/{id}/subscribe notify visible Subscribes to a linked bank account's transaction data (billed by Stripe)
POST /v1/financial_connections/accounts/{id}/unsubscribe notify visible Stops transaction data refreshes for a linked bank account
POST /v1/financial_connections/sessions notify visible Creates a session for a customer to link a bank account
POST /v1/forwarding/requests escalate irreversible Sends stored card details to a third-party URL
POST /v1/identity/verification_sessions notify visible Starts an identity verification (billed per verification)
POST /v1/identity/verification_sessions/{id} notify visible Updates an identity verification session
POST /v1/identity/verification_sessions/{id}/cancel notify visible Cancels an identity verification session (it cannot be resumed)
POST /v1/identity/verification_sessions/{id}/redact escalate irreversible Redacts an identity verification: its documents and data are destroyed
POST /v1/invoice_rendering_templates/{id}/archive allow reversible Archives an invoice rendering template (unarchive undoes)
POST /v1/invoice_rendering_templates/{id}/unarchive allow reversible Unarchives an invoice rendering template
DELETE /v1/invoiceitems/{id} escalate irreversible Deletes an invoice item
POST /v1/invoiceitems/{id} escalate money Changes an invoice item (amount, price, quantity, tax) that an automatic charge may collect
POST /v1/invoices notify visible Creates a draft invoice that does not advance on its own (auto_advance other than false, or a finalize time, is held by conditional rules)
POST /v1/invoices/create_preview notify visible Previews an invoice (creates nothing); notify, not allow, only because the path also matches the invoice update route
DELETE /v1/invoices/{id} escalate irreversible Deletes a draft invoice
POST /v1/invoices/{id} notify visible Updates a draft invoice (turning on auto_advance or a finalize time is held by conditional rules)
POST /v1/invoices/{id}/add_lines escalate money Adds lines to an invoice that may be charged automatically
POST /v1/invoices/{id}/attach_payment escalate money Attaches a payment to an invoice (pays it)
POST /v1/invoices/{id}/remove_lines escalate money Removes lines from an invoice (and may delete their invoice items)
POST /v1/invoices/{id}/update_lines escalate money Changes lines (amounts, prices, quantities) of an invoice that may be charged automatically
POST /v1/invoices/{invoiceId}/lines/{id} escalate money Changes an invoice line (amount, price, quantity) of an invoice that may be charged automatically
POST /v1/issuing/authorizations/{id} notify visible Updates an issuing authorization's metadata
POST /v1/issuing/authorizations/{id}/decline notify visible Declines a pending card authorization (no money moves)
POST /v1/issuing/cardholders notify visible Creates a cardholder (issuing a card to them is held)
POST /v1/issuing/cardholders/{id} escalate irreversible Changes a cardholder: status, spending controls, billing details
POST /v1/issuing/cards/{id} escalate money Changes an issued card: activation, cancellation, spending limits, PIN
POST /v1/issuing/disputes notify visible Creates a draft issuing dispute (submitting it is held)
POST /v1/issuing/disputes/{id} notify visible Updates a draft issuing dispute's evidence
POST /v1/issuing/disputes/{id}/submit escalate irreversible Submits an issuing dispute to the card network (one attempt, cannot be withdrawn)
POST /v1/issuing/personalization_designs notify visible Creates a card design
POST /v1/issuing/personalization_designs/{id} notify visible Updates a card design
POST /v1/issuing/tokens/{id} escalate irreversible Activates, suspends or deletes a card's wallet token (Apple Pay, Google Pay)
POST /v1/issuing/transactions/{id} notify visible Updates an issuing transaction's metadata
POST /v1/payment_intents/{id} notify visible Updates an unconfirmed payment intent (a new amount possibly over $100 is held by a conditional rule)
POST /v1/payment_intents/{id}/apply_customer_balance escalate money Pays a payment intent from the customer's cash balance
POST /v1/payment_intents/{id}/cancel escalate money Cancels a payment intent: an uncaptured authorization is released for good (the funds cannot be captured)
POST /v1/payment_intents/{id}/verify_microdeposits escalate money Verifies a payment intent's bank account, which is then debited
POST /v1/payment_links/{id} notify visible Updates or deactivates a payment link (customers still decide to pay)
POST /v1/payment_method_configurations notify visible Creates a payment method configuration (which methods checkout offers)
POST /v1/payment_method_configurations/{id} notify visible Changes which payment methods checkout offers
POST /v1/payment_method_domains notify visible Registers a domain for wallets (Apple Pay, Google Pay, Link)
POST /v1/payment_method_domains/{id} notify visible Enables or disables a payment method domain
POST /v1/payment_method_domains/{id}/validate allow reversible Re-validates a payment method domain
POST /v1/payment_methods allow reversible Tokenizes a payment method (unattached; charging it is gated separately)
POST /v1/payment_methods/{id} notify visible Updates a payment method's billing details or expiry
POST /v1/payment_methods/{id}/attach notify visible Saves a payment method to a customer (charging it is gated separately)
POST /v1/payment_methods/{id}/detach escalate irreversible Removes a saved payment method from a customer (it cannot be reattached)
POST /v1/payment_records/report_payment notify visible Records a payment made outside Stripe (no money moves through Stripe)
POST /v1/payment_records/{id}/report_payment_attempt notify visible Records a new attempt of a payment made outside Stripe
POST /v1/payment_records/{id}/report_payment_attempt_canceled notify visible Records that an outside payment attempt was canceled
POST /v1/payment_records/{id}/report_payment_attempt_failed notify visible Records that an outside payment attempt failed
POST /v1/payment_records/{id}/report_payment_attempt_guaranteed notify visible Records that an outside payment attempt was guaranteed
POST /v1/payment_records/{id}/report_payment_attempt_informational notify visible Adds information to an outside payment attempt
POST /v1/payment_records/{id}/report_refund notify visible Records a refund made outside Stripe (no money moves through Stripe)
POST /v1/payouts/{id} notify visible Updates a payout's metadata
POST /v1/payouts/{id}/cancel escalate money Cancels a pending payout (the money stays in the Stripe balance)
POST /v1/payouts/{id}/reverse escalate money Reverses a paid payout (pulls the money back from the bank account)
POST /v1/plans notify visible Creates a plan (a recurring price)
DELETE /v1/plans/{id} escalate irreversible Deletes a plan
POST /v1/plans/{id} notify visible Updates a plan's nickname, metadata, trial days or active flag (amounts are immutable)
POST /v1/prices notify visible Creates a price
POST /v1/prices/{id} notify visible Updates a price's metadata, nickname or active flag (amounts are immutable; a lookup key set or cleared is held by a conditional rule)
POST /v1/product_catalog/trial_offers notify visible Creates a trial offer (a free or discounted period)
POST /v1/product_catalog/trial_offers/{id} notify visible Updates a trial offer
POST /v1/products notify visible Creates a product
DELETE /v1/products/{id} escalate irreversible Deletes a product
POST /v1/products/{id} notify visible Updates a product
POST /v1/products/{id}/features escalate irreversible Attaches an entitlement feature to a product (every subscriber of it gets that access; detaching is held too)
DELETE /v1/products/{productId}/features/{id} escalate irreversible Removes an entitlement feature from a product (customers lose access)
POST /v1/promotion_codes escalate money Creates a customer-facing promotion code (a code name freed by deactivating a live one can be reissued for another coupon, 100% off included)
POST /v1/promotion_codes/{id} notify visible Activates, deactivates or updates a promotion code
POST /v1/quotes notify visible Creates a draft quote (accepting it is held)
POST /v1/quotes/{id} notify visible Updates a draft quote
POST /v1/quotes/{id}/cancel notify visible Cancels a quote (no money moves)
POST /v1/quotes/{id}/finalize notify visible Finalizes a quote so it can be sent (accepting it is held)
POST /v1/radar/payment_evaluations allow reversible Asks Radar to score a payment (changes nothing)
POST /v1/radar/value_list_items escalate irreversible Adds an entry to a Radar list, which may be an allow list that lets payments skip fraud rules
DELETE /v1/radar/value_list_items/{id} escalate irreversible Removes an entry from a Radar list (a block list loses it)
POST /v1/radar/value_lists notify visible Creates an empty Radar list (the rules that use lists are Dashboard-only)
DELETE /v1/radar/value_lists/{id} escalate irreversible Deletes a Radar list (rules that use it lose it)
POST /v1/radar/value_lists/{id} notify visible Renames a Radar list (a new alias, which rules refer to, is held by a conditional rule)
POST /v1/refunds/{id} notify visible Updates a refund's metadata
POST /v1/refunds/{id}/cancel escalate money Cancels a pending refund (the customer does not get the money back)
POST /v1/reporting/report_runs notify visible Runs a financial report into a Stripe file
POST /v1/reviews/{id}/approve escalate irreversible Approves a payment Radar held for fraud review
POST /v1/setup_intents notify visible Creates a setup intent to save a payment method (no money moves; later charges are gated)
POST /v1/setup_intents/{id} notify visible Updates a setup intent
POST /v1/setup_intents/{id}/cancel notify visible Cancels a setup intent
POST /v1/setup_intents/{id}/confirm notify visible Confirms a setup intent: saves the payment method for later charges, which are gated (no money moves now)
POST /v1/setup_intents/{id}/verify_microdeposits notify visible Verifies a setup intent's bank account (no money moves now)
POST /v1/shipping_rates notify visible Creates a shipping rate
POST /v1/shipping_rates/{id} notify visible Updates or deactivates a shipping rate
POST /v1/sources notify visible Creates a legacy payment source (charging it is gated separately)
POST /v1/sources/{id} notify visible Updates a legacy payment source's owner details or metadata
POST /v1/sources/{id}/verify notify visible Verifies a legacy payment source (e.g. microdeposit amounts)
POST /v1/subscription_items escalate money Adds an item to a subscription (prorations may be invoiced and charged now or later)
DELETE /v1/subscription_items/{id} escalate money Removes a subscription item (prorations may be credited or invoiced)
POST /v1/subscription_items/{id} escalate money Changes a subscription item's price or quantity (prorations may be invoiced and charged)
POST /v1/subscription_schedules escalate money Creates a subscription schedule, which starts subscriptions that charge
POST /v1/subscription_schedules/{id} escalate money Changes a subscription schedule's phases (prices, quantities, dates that charge)
POST /v1/subscription_schedules/{id}/release escalate money Releases a schedule: its subscription keeps charging with no planned end
POST /v1/subscriptions escalate money Starts a subscription (the first invoice may be charged now)
DELETE /v1/subscriptions/{id}/discount escalate money Removes a subscription's discount (the customer pays more)
POST /v1/subscriptions/{id}/migrate escalate money Migrates a subscription's billing mode (changes how prorations are charged)
POST /v1/subscriptions/{id}/pause escalate money Pauses a subscription (may invoice outstanding usage or prorations; stops revenue)
POST /v1/subscriptions/{id}/resume escalate money Resumes a paused subscription (may invoice and charge now)
POST /v1/tax/calculations allow reversible Calculates tax for a cart (a temporary object; nothing is recorded or charged)
POST /v1/tax/locations notify visible Creates a tax location
POST /v1/tax/registrations escalate money Registers to collect tax in a jurisdiction (customers there are charged tax on renewals)
POST /v1/tax/registrations/{id} escalate money Schedules a tax registration's start or end (tax collection on renewals starts or stops)
POST /v1/tax/settings notify visible Changes tax settings (head office, default tax behavior)
POST /v1/tax/transactions/create_from_calculation notify visible Records a tax transaction for tax reporting
POST /v1/tax/transactions/create_reversal notify visible Records a tax reversal for tax reporting
POST /v1/tax_ids notify visible Adds a tax ID
DELETE /v1/tax_ids/{id} escalate irreversible Deletes a tax ID
POST /v1/tax_rates notify visible Creates a tax rate
POST /v1/tax_rates/{id} notify visible Updates or deactivates a tax rate (the percentage is immutable)
POST /v1/terminal/configurations notify visible Creates a Terminal reader configuration
DELETE /v1/terminal/configurations/{id} escalate irreversible Deletes a Terminal reader configuration
POST /v1/terminal/configurations/{id} notify visible Changes a Terminal reader configuration (tipping, offline mode, splash screen)
POST /v1/terminal/connection_tokens escalate irreversible Mints a Terminal connection token: a credential that lets an app drive this account's readers
POST /v1/terminal/locations notify visible Creates a Terminal location
DELETE /v1/terminal/locations/{id} escalate irreversible Deletes a Terminal location
POST /v1/terminal/locations/{id} notify visible Updates a Terminal location
POST /v1/terminal/onboarding_links notify visible Creates a link to accept Apple's terms for Tap to Pay on iPhone
POST /v1/terminal/readers notify visible Registers a card reader to this account
DELETE /v1/terminal/readers/{id} escalate irreversible Deletes a card reader
POST /v1/terminal/readers/{id} notify visible Renames a card reader or changes its metadata
POST /v1/terminal/readers/{id}/cancel_action allow reversible Cancels the reader's current action (nothing is charged)
POST /v1/terminal/readers/{id}/collect_inputs notify visible Asks the customer at a reader for input (e-mail, signature, consent)
POST /v1/terminal/readers/{id}/collect_payment_method notify visible Has a reader collect a card for a payment intent (confirming it is held)
POST /v1/terminal/readers/{id}/confirm_payment_intent escalate money Confirms a payment intent on a reader (charges the card)
POST /v1/terminal/readers/{id}/process_payment_intent escalate money Collects and confirms a payment on a reader (charges the card)
POST /v1/terminal/readers/{id}/process_setup_intent notify visible Saves a card presented at a reader (no money moves)
POST /v1/terminal/readers/{id}/refund_payment escalate money Refunds a payment to a card presented at a reader
POST /v1/terminal/readers/{id}/set_reader_display allow reversible Shows a cart on the reader's screen
DELETE /v1/test_helpers/test_clocks/{id} escalate irreversible Deletes a test clock and its test objects (test mode only, but every Stripe DELETE is held)
POST /v1/three_d_secure/authentications notify visible Starts a 3D Secure authentication of a card with its issuer
POST /v1/three_d_secure/authentications/{id}/cancel allow reversible Cancels a 3D Secure authentication
POST /v1/three_d_secure/authentications/{id}/submit notify visible Submits a 3D Secure authentication to the card issuer
POST /v1/tokens allow reversible Tokenizes card, bank or account data (single use; using the token is gated)
POST /v1/topups/{id} notify visible Updates a top-up's description or metadata
POST /v1/topups/{id}/cancel escalate money Cancels a pending top-up (money movement)
POST /v1/transfers/{id} notify visible Updates a transfer's description or metadata
POST /v1/transfers/{transferId}/reversals/{id} notify visible Updates a transfer reversal's metadata
POST /v1/treasury/credit_reversals escalate money Returns a received credit to its sender
POST /v1/treasury/debit_reversals escalate money Reverses a received debit (pulls the money back)
POST /v1/treasury/financial_accounts notify visible Opens a financial account (money moves only through held routes)
POST /v1/treasury/financial_accounts/{id} escalate irreversible Changes a financial account: forwarding settings, platform restrictions, features
POST /v1/treasury/financial_accounts/{id}/close escalate irreversible Closes a financial account
POST /v1/treasury/financial_accounts/{id}/features escalate irreversible Turns financial account features on or off (outbound payments, cards, ACH)
POST /v1/treasury/inbound_transfers escalate money Pulls money from a linked bank account into a financial account
POST /v1/treasury/inbound_transfers/{id}/cancel escalate money Cancels an inbound transfer (money movement)
POST /v1/treasury/outbound_payments/{id}/cancel escalate money Cancels an outbound payment (money movement)
POST /v1/treasury/outbound_transfers/{id}/cancel escalate money Cancels an outbound transfer (money movement)
POST /v1/webhook_endpoints escalate irreversible Creates a webhook endpoint: event data (customers, payments) is sent to a new URL
DELETE /v1/webhook_endpoints/{id} escalate irreversible Deletes a webhook endpoint (event delivery to it stops)
POST /v1/webhook_endpoints/{id} escalate irreversible Changes a webhook endpoint's URL or events (where event data is sent)
POST /v2/billing/meter_event_adjustments escalate money Cancels a reported usage event (v2; lowers a customer's bill, like a credit note)
POST /v2/billing/meter_event_session escalate irreversible Mints a 15-minute token for the meter event stream on meter-events.stripe.com, a host Airlock does not gate
POST /v2/billing/meter_event_stream escalate money Reports usage events in bulk (v2 stream), billed on the customers' next invoices with no limit
POST /v2/billing/meter_events escalate money Reports a usage event (v2), billed on the customer's next invoice with no limit
POST /v2/commerce/product_catalog/imports escalate irreversible Imports products, prices or promotions in bulk (mode=replace replaces the catalog) from a file sent to a presigned upload link on a host Airlock does not gate
POST /v2/core/account_links escalate irreversible Creates a link that lets whoever opens it onboard or edit an account (v2)
POST /v2/core/account_tokens allow reversible Tokenizes account data (v2; using the token is gated)
POST /v2/core/accounts notify visible Creates an account (v2); its persons, bank accounts and money movement are gated separately
POST /v2/core/accounts/{accountId}/person_tokens allow reversible Tokenizes person data (v2; using the token is gated)
POST /v2/core/accounts/{accountId}/persons escalate irreversible Adds a person (owner, representative) to an account (v2)
DELETE /v2/core/accounts/{accountId}/persons/{id} escalate irreversible Deletes a person of an account (v2)
POST /v2/core/accounts/{accountId}/persons/{id} escalate irreversible Changes a person (owner, representative) of an account (v2)
POST /v2/core/accounts/{id} escalate irreversible Updates an account (v2): configurations, capabilities, identity
POST /v2/core/accounts/{id}/close escalate irreversible Closes an account (v2)
POST /v2/core/event_destinations escalate irreversible Creates an event destination: event data is sent to a new webhook URL or cloud bus
DELETE /v2/core/event_destinations/{id} escalate irreversible Deletes an event destination
POST /v2/core/event_destinations/{id} escalate irreversible Changes where an event destination sends event data, or which events
POST /v2/core/event_destinations/{id}/disable escalate irreversible Disables an event destination (payment and fraud events stop reaching it; as disabling a webhook endpoint)
POST /v2/core/event_destinations/{id}/enable escalate irreversible Enables an event destination: event data flows to it again
POST /v2/core/event_destinations/{id}/ping allow reversible Sends a test ping event to an event destination (no account data)
POST /v2/core/vault/gb_bank_accounts escalate irreversible Adds a UK bank account as a payout destination
POST /v2/core/vault/gb_bank_accounts/{id}/archive notify visible Archives a UK bank account: it can no longer receive money (unarchive undoes)
POST /v2/core/vault/gb_bank_accounts/{id}/unarchive escalate irreversible Makes an archived UK bank account a payout destination again
POST /v2/core/vault/us_bank_accounts escalate irreversible Adds a US bank account as a payout destination
POST /v2/core/vault/us_bank_accounts/{id} escalate irreversible Changes a US bank account's routing details
POST /v2/core/vault/us_bank_accounts/{id}/archive notify visible Archives a US bank account: it can no longer receive money (unarchive undoes)
POST /v2/core/vault/us_bank_accounts/{id}/confirm_microdeposits notify visible Confirms microdeposit amounts to verify a US bank account
POST /v2/core/vault/us_bank_accounts/{id}/send_microdeposits notify visible Has Stripe send verification microdeposits to a US bank account
POST /v2/core/vault/us_bank_accounts/{id}/unarchive escalate irreversible Makes an archived US bank account a payout destination again
POST /v2/money_management/financial_accounts/{id} notify visible Renames a financial account or changes its metadata (v2)
POST /v2/money_management/financial_addresses notify visible Creates bank details for receiving money into a financial account (inbound only)
POST /v2/money_management/inbound_transfers escalate money Pulls money from a bank account into a financial account (v2)
POST /v2/money_management/outbound_payments/{id}/cancel escalate money Cancels an outbound payment (v2, money movement)
POST /v2/money_management/outbound_setup_intents escalate irreversible Sets up a payout method (bank account or card) for outbound payments
POST /v2/money_management/outbound_setup_intents/{id} escalate irreversible Changes the payout method an outbound setup intent sets up
POST /v2/money_management/outbound_setup_intents/{id}/cancel notify visible Cancels an outbound setup intent
POST /v2/money_management/payout_intents/{id} escalate money Changes a payout intent (amount, recipient) before it is confirmed
POST /v2/money_management/payout_intents/{id}/cancel escalate money Cancels a payout intent (money movement)
POST /v2/money_management/payout_intents/{id}/refresh_fx_quote notify visible Refreshes a payout intent's exchange rate quote (confirming it is held)
POST /v2/money_management/payout_intents/{id}/refresh_recipient_verification notify visible Re-runs recipient verification for a payout intent
POST /v2/money_management/payout_methods/{id}/archive notify visible Archives a payout method (it can no longer receive money; unarchive undoes)
POST /v2/money_management/payout_methods/{id}/unarchive escalate irreversible Makes an archived payout method usable again
POST /v2/money_management/recipient_verifications notify visible Checks a payout recipient's name against their bank account
POST /v2/money_management/recipient_verifications/{id}/acknowledge escalate irreversible Accepts a recipient name mismatch so payouts to that account proceed
POST /v2/money_management/transactions/{id} notify visible Updates a money management transaction's metadata
POST /v2/money_management/transactions/{id}/refresh_regulatory_receipt allow reversible Regenerates a transaction's regulatory receipt
"""


def parse_routes_table(text):
    table = {}
    for n, line in enumerate(text.strip().splitlines(), 1):
        parts = line.split(" ", 4)
        if len(parts) != 5:
            sys.exit(f"ROUTES line {n}: want METHOD PATH BUCKET CLASS REASON: {line!r}")
        method, path, bucket, klass, reason = parts
        key = f"{method} {path}"
        if key in table:
            sys.exit(f"ROUTES: {key} listed twice")
        table[key] = (bucket, klass, reason)
    return table


ROUTES = parse_routes_table(ROUTES_TEXT)


# Words the case rule below would split wrongly (stripe.toml already names `stripe.oauth.*`).
SNAKE = {"OAuth": "oauth"}
# SDK method names spelled as the hand-written tools spell them (`stripe.customers.delete`).
METHOD = {"del": "delete"}


def snake(s):
    """`AccountLinks` -> account_links, `ThreeDSecure` -> three_d_secure, `voidGrant` -> void_grant."""
    if s in SNAKE:
        return SNAKE[s]
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", s)
    return s.lower()


def tool_name(sdk):
    resource, method = sdk.split(".", 1)
    return ".".join(["stripe"] + [snake(p) for p in resource.split("/")]
                    + [METHOD.get(method, snake(method))])


def noun(sdk):
    """`Coupons.del` -> "a coupon"; `Accounts.deleteExternalAccount` -> "an external account"."""
    resource, method = sdk.split(".", 1)
    if method.startswith("delete") and method != "del":
        words = snake(method[len("delete"):]).replace("_", " ")
    else:
        last = snake(resource.split("/")[-1]).replace("_", " ")
        words = last[:-3] + "y" if last.endswith("ies") else last.rstrip("s")
    return ("an " if words[0] in "aeiou" else "a ") + words


def template(path):
    """Path template -> [(kind, text)], kind lit | one | many."""
    out = []
    for s in path.split("/"):
        if not s:
            continue
        if s.startswith("{") and s.endswith("}"):
            name = s[1:-1]
            out.append(("many", name[:-1]) if name.endswith("*") else ("one", name))
        else:
            out.append(("lit", s))
    return out


def same_shape(rule_path, route_path):
    """The brief's (and coverage.rs's) shape rule: same segment count, equal literals (ignoring
    case), a parameter wherever the route has one. A lone `/{rest*}` catch-all never counts."""
    t, want = template(rule_path), template(route_path)
    if len(t) == 1 and t[0][0] == "many":
        return False
    if len(t) != len(want):
        return False
    for (a, x), (b, y) in zip(t, want):
        if (a == "lit") != (b == "lit"):
            return False
        if a == "lit" and x.lower() != y.lower():
            return False
    return True


def methods_of(rule):
    ms = list(rule.get("methods", []))
    if "method" in rule:
        ms.append(rule["method"])
    return ms


def read_tsv():
    routes = []
    for line in open(os.path.join(ROOT, TSV)):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2 or " " not in parts[0]:
            continue
        method, path = parts[0].split(" ", 1)
        routes.append((method, path, parts[1]))
    return routes


def load(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return tomllib.load(f)


def classify(method, path, sdk):
    key = f"{method} {path}"
    if key in ROUTES:
        return ROUTES[key]
    for pat, bucket, klass, reason in PATTERNS:
        if fnmatch.fnmatchcase(key, pat):
            return bucket, klass, reason.format(noun=noun(sdk))
    return None


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generate():
    """(text, errors): the generated file and what stops it (unclassified routes, ...)."""
    hand = load(HAND)
    hand_rules = hand.get("rule", [])
    errors = []
    entries = []
    tools = {r["tool"] for r in hand_rules}
    for method, path, sdk in read_tsv():
        key = f"{method} {path}"
        shaped = [r for r in hand_rules if method in methods_of(r) and same_shape(r["path"], path)]
        if any(not r.get("when") for r in shaped):
            if key in ROUTES:
                errors.append(f"{key}: named by a base entry in {HAND} and in ROUTES (pick one)")
            continue
        c = classify(method, path, sdk)
        if c is None:
            errors.append(f"{key} ({sdk}): unclassified; add it to ROUTES")
            continue
        bucket, klass, reason = c
        if bucket not in BUCKETS or klass not in CLASSES[bucket]:
            errors.append(f"{key}: bucket {bucket} with class {klass}")
        # Share the path text of the hand-written conditional rules for this route, if any.
        spellings = sorted({r["path"] for r in shaped})
        if len(spellings) > 1:
            errors.append(f"{key}: conditional rules in {HAND} spell it {spellings}; use one")
        if spellings:
            tpath = spellings[0]
        else:
            tpath = "/".join("{" + snake(s[1:-1]) + "}" if s.startswith("{") else s
                             for s in path.split("/"))
        tool = tool_name(sdk)
        if tool in tools:
            errors.append(f"{key}: tool {tool} is already used")
        tools.add(tool)
        entries.append((tool, method, tpath, klass, bucket, reason))
    svc = hand["service"]
    counts = {b: sum(1 for e in entries if e[4] == b) for b in BUCKETS}
    out = [f"# Generated by scripts/gen-stripe-routes.py from {TSV} (npm stripe 23.1.0, API",
           "# 2026-10-28): a base entry for every Stripe non-GET route that rules/stripe.toml does not",
           "# name. Edit the generator (its ROUTES table), not this file; conditional rules (money",
           "# limits, confirm=true, ...) live in rules/stripe.toml. Stripe writes no rule names are held.",
           f"# {len(entries)} entries: " + ", ".join(f"{counts[b]} {b}" for b in BUCKETS if counts[b]) + ".",
           "",
           "[service]",
           f"name = {toml_str(svc['name'])}",
           "hosts = [" + ", ".join(toml_str(h) for h in svc["hosts"]) + "]"]
    if svc.get("path_prefixes"):
        out.append("path_prefixes = [" + ", ".join(toml_str(p) for p in svc["path_prefixes"]) + "]")
    if svc.get("form_bodies"):
        out.append("form_bodies = true")
    if svc.get("json_prefixes"):
        out.append("json_prefixes = [" + ", ".join(toml_str(p) for p in svc["json_prefixes"]) + "]")
    if svc.get("slashless_ids"):
        out.append("slashless_ids = true")
    for key in ("version_header", "version_floor"):
        if svc.get(key):
            out.append(f"{key} = {toml_str(svc[key])}")
    out.append(f"default = {toml_str(svc.get('default', 'allow'))}")
    out.append("")
    for tool, method, tpath, klass, bucket, reason in entries:
        out += ["[[rule]]", f"tool = {toml_str(tool)}", f"method = {toml_str(method)}",
                f"path = {toml_str(tpath)}", f"class = {toml_str(klass)}",
                f"action = {toml_str(bucket)}", f"reason = {toml_str(reason)}", ""]
    return "\n".join(out), errors


def check(generated):
    """Problems with the committed files: stale output, routes without exactly one base entry,
    rules the tests cannot tell apart."""
    problems = []
    committed = open(os.path.join(ROOT, OUT)).read() if os.path.exists(os.path.join(ROOT, OUT)) else ""
    if committed.rstrip("\n") != generated.rstrip("\n"):
        problems.append(f"{OUT} is stale: run python3 {os.path.relpath(__file__, ROOT)} > {OUT}")
    # Every rules/stripe*.toml, in the order the catalog loads them (file name order, which the
    # embedded list in src/rules/catalog.rs follows too).
    files = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "rules", "stripe*.toml")))
    rules = []
    for f in files:
        doc = load(f)
        if doc["service"].get("hosts") != load(HAND)["service"].get("hosts"):
            problems.append(f"{f}: [service] hosts differ from {HAND} (the files merge into one service)")
        for r in doc.get("rule", []):
            rules.append((f, r))
    seen = {}
    for f, r in rules:
        if r["tool"] in seen:
            problems.append(f"tool {r['tool']} in {seen[r['tool']]} and {f}")
        seen[r["tool"]] = f
    counts = {b: 0 for b in BUCKETS}
    for method, path, sdk in read_tsv():
        key = f"{method} {path}"
        shaped = [(i, f, r) for i, (f, r) in enumerate(rules)
                  if method in methods_of(r) and same_shape(r["path"], path)]
        bases = [(i, f, r) for i, f, r in shaped if not r.get("when")]
        if not bases:
            problems.append(f"missing: {key} ({sdk}) has no base entry")
            continue
        if len(bases) > 1:
            problems.append(f"duplicate: {key} has {len(bases)} base entries: "
                            + ", ".join(f"{r['tool']} ({f})" for _, f, r in bases))
            continue
        bi, bf, base = bases[0]
        counts[base["action"]] += 1
        for i, f, r in shaped:
            if not r.get("when"):
                continue
            if r["path"] != base["path"]:
                problems.append(f"{key}: conditional {r['tool']} spells the path {r['path']!r}, "
                                f"its base {base['tool']} {base['path']!r} (use one spelling)")
            if r["action"] == base["action"] and bi < i:
                problems.append(f"{key}: conditional {r['tool']} ({r['action']}) comes after its "
                                f"base {base['tool']} of the same action, so it never decides")
    return problems, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with the committed file and check every route has one base entry")
    args = ap.parse_args()
    text, errors = generate()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    if not args.check:
        print(text, end="")
        return
    problems, counts = check(text)
    total = sum(counts.values())
    summary = ", ".join(f"{counts[b]} {b}" for b in BUCKETS)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s); {total} routes classified ({summary})", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {total} Stripe routes, each with one base entry: {summary}")


if __name__ == "__main__":
    main()
