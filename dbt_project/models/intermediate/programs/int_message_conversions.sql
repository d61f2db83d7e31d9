-- Every message with what the performance marts count: its step, variant and day, its
-- outcome flags, and when its enrollment reached the program's goal (converted_at). The
-- marts aggregate this table rather than joining 4M messages to the conversions on every
-- build; program_performance reads only the converted messages, by converted_at.
--
-- Incremental by message: a build redoes the messages loaded into message_sends since the
-- last one, and every message of the contacts whose conversions int_program_conversions
-- redid (the same inputs, changed_contacts.sql); every message when a source of the
-- conversions lost rows (the post-hook), or when more than incremental_contacts_limit
-- contacts changed.
{{ incremental_by_contact('conversion_source_marks()', 'message_conversion_rows',
                          indexes=[{'columns': ['ledger_id'], 'unique': True},
                                   {'columns': ['contact_id']},
                                   {'columns': ['converted_at']}],
                          unique_key='ledger_id') }}
{%- set mark = since_last_build() %}

{{ message_conversion_rows(
    mark if is_incremental() else none,
    changed_contacts(conversion_inputs_loaded_since(mark))) }}
